"""Accounts: operators create them (with the operator token); an account reads itself and
can delete itself (D4, S7)."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from anyio import from_thread
from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from sealflow.api.deps import PlatformDep, bearer
from sealflow.api.errors import ApiError
from sealflow.api.permissions import public, requires
from sealflow.api.schemas import (
    AccountCreate,
    AccountCreated,
    AccountDelete,
    AccountDeleted,
    AccountOut,
    AccountSettings,
    AccountSettingsOut,
    errors,
)
from sealflow.identity.permissions import Permission
from sealflow.services import account_deletion, account_settings, accounts
from sealflow.services.accounts import Caller

router = APIRouter(prefix="/v1", tags=["accounts"])

AccountRead = Annotated[Caller, Depends(requires(Permission.ACCOUNT_READ))]
AccountDeleter = Annotated[Caller, Depends(requires(Permission.ACCOUNT_DELETE))]
SettingsWrite = Annotated[Caller, Depends(requires(Permission.SETTINGS_WRITE))]


def operator(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected: str | None = request.app.state.operator_token_hash
    given = hashlib.sha256(credentials.credentials.encode()).hexdigest() if credentials else ""
    if expected is None or not hmac.compare_digest(given, expected):
        raise ApiError(401, "creating accounts needs the operator token", code="unauthenticated",
                       headers={"WWW-Authenticate": "Bearer"})


@router.post("/accounts", status_code=201, response_model=AccountCreated,
             dependencies=[Depends(operator),
                           Depends(public("the operator token, checked by operator()"))],
             responses=errors(400, 401, 422))
def create_account(body: AccountCreate, p: PlatformDep) -> AccountCreated:
    account, token = accounts.create_account(p.cells, p.clock, name=body.name, region=body.region)
    return AccountCreated(id=account.id, name=account.name, region=account.region, token=token)


@router.get("/account", response_model=AccountOut, responses=errors(401, 403, 404, 429))
def read_account(who: AccountRead, p: PlatformDep) -> AccountOut:
    account = accounts.get_account(p.cells, who)
    return AccountOut(id=account.id, name=account.name, region=account.region)


@router.delete("/account", response_model=AccountDeleted,
               responses=errors(400, 401, 403, 404, 409, 422, 429))
def delete_account(body: AccountDelete, who: AccountDeleter, p: PlatformDep) -> AccountDeleted:
    """Deletes the calling account for good: its keys are destroyed first (its data can never
    be read again, backups included), then its tokens, workflows, executions and settings;
    answers the deletion record. `confirm` must repeat the account's id."""
    if body.confirm != who.account_id:
        # 409, not 422: the body is well formed, it names another account than the caller.
        raise ApiError(409, "confirm must repeat this account's id to delete it",
                       code="confirmation_mismatch",
                       extra={"issues": [{"path": "$.confirm",
                                          "message": "must be this account's id"}]})

    def forget(region: str, workflow_ids: list[str]) -> None:
        # The definition cache belongs to the event loop's thread; this route runs in a
        # worker thread (a large deletion must not stall the loop).
        from_thread.run_sync(p.definitions.forget_account, region, workflow_ids)

    record = account_deletion.delete_account(
        p.cells, p.clock, region=who.region, account_id=who.account_id, forget=forget,
        actor=who.actor,
    )
    return AccountDeleted(account_id=record.account_id, region=record.region,
                          deleted_at=record.deleted_at, removed=record.removed)


@router.get("/account/settings", response_model=AccountSettingsOut,
            responses=errors(401, 403, 404, 429))
def read_settings(who: AccountRead, p: PlatformDep) -> AccountSettingsOut:
    return AccountSettingsOut(**account_settings.read(p.cells, who))


@router.patch("/account/settings", response_model=AccountSettingsOut,
              responses=errors(400, 401, 403, 404, 422, 429))
def change_settings(body: AccountSettings, who: SettingsWrite, p: PlatformDep
                    ) -> AccountSettingsOut:
    """Replaces the sections given (redaction: extra field names, detectors turned off). The
    defaults always apply; running servers see a change within 30 seconds."""
    changes = {name: getattr(body, name).model_dump() for name in body.model_fields_set
               if getattr(body, name) is not None}
    return AccountSettingsOut(**account_settings.change(p.cells, p.clock, who, changes))
