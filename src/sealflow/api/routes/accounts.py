"""Accounts: operators create them (with the operator token); an account reads itself."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials

from sealflow.api.deps import CallerDep, PlatformDep, bearer
from sealflow.api.errors import ApiError
from sealflow.api.schemas import AccountCreate, AccountCreated, AccountOut, errors
from sealflow.services import accounts

router = APIRouter(prefix="/v1", tags=["accounts"])


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
             dependencies=[Depends(operator)], responses=errors(400, 401, 422))
def create_account(body: AccountCreate, p: PlatformDep) -> AccountCreated:
    account, token = accounts.create_account(p.cells, p.clock, name=body.name, region=body.region)
    return AccountCreated(id=account.id, name=account.name, region=account.region, token=token)


@router.get("/account", response_model=AccountOut, responses=errors(401, 404, 429))
def read_account(who: CallerDep, p: PlatformDep) -> AccountOut:
    account = accounts.get_account(p.cells, who)
    return AccountOut(id=account.id, name=account.name, region=account.region)
