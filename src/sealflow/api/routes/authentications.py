"""Stored authentications (S1, S2): write-only. Create, list, read, change (rename, settings,
replace the secret, expiry), delete, test, and connect (OAuth authorization code)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from sealflow.api.authentication_schemas import (
    AuthenticationChange,
    AuthenticationCreate,
    AuthenticationCreated,
    AuthenticationOut,
    ConnectionTestOut,
    ConnectOut,
)
from sealflow.api.deps import PlatformDep
from sealflow.api.permissions import requires
from sealflow.api.schemas import errors
from sealflow.bootstrap import Platform
from sealflow.identity.permissions import Permission
from sealflow.services import authentications as service
from sealflow.services import credentials, oauth_connect
from sealflow.services.accounts import Caller
from sealflow.services.authentications import AuthenticationView

router = APIRouter(prefix="/v1/authentications", tags=["authentications"],
                   responses=errors(401, 403, 422, 429))

AuthenticationsRead = Annotated[Caller, Depends(requires(Permission.AUTHENTICATIONS_READ))]
AuthenticationsWrite = Annotated[Caller, Depends(requires(Permission.AUTHENTICATIONS_WRITE))]


def _out(view: AuthenticationView) -> AuthenticationOut:
    return AuthenticationOut(
        id=view.id, name=view.name, type=view.type, shared=view.shared,
        status=view.status,
        fingerprint=view.fingerprint, settings=view.settings, expires_at=view.expires_at,
        created_at=view.created_at, updated_at=view.updated_at,
        last_used_at=view.last_used_at,
    )


def redirect_uri(p: Platform) -> str:
    return p.settings.base_url() + oauth_connect.CALLBACK_PATH


def _authorize_url(p: Platform, who: Caller, auth_id: str) -> str:
    return oauth_connect.start(p.cells, p.clock, who, auth_id, redirect_uri(p))


@router.post("", status_code=201, response_model=AuthenticationCreated,
             responses=errors(400, 409))
def create(body: AuthenticationCreate, p: PlatformDep, who: AuthenticationsWrite
           ) -> AuthenticationCreated:
    view = service.create(p.cells, p.clock, who, name=body.name, type_name=body.type,
                          shared=body.shared, settings=body.settings, secret=body.secret,
                          expires_at=body.expires_at)
    url = _authorize_url(p, who, view.id) if view.type == "oauth2_code" else None
    return AuthenticationCreated(**_out(view).model_dump(), authorize_url=url)


@router.get("", response_model=list[AuthenticationOut])
def list_(
    p: PlatformDep, who: AuthenticationsRead,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[AuthenticationOut]:
    views = service.list_authentications(p.cells, who, limit=limit, offset=offset)
    return [_out(v) for v in views]


@router.get("/{auth_id}", response_model=AuthenticationOut, responses=errors(404))
def read(auth_id: str, p: PlatformDep, who: AuthenticationsRead) -> AuthenticationOut:
    return _out(service.get(p.cells, who, auth_id))


@router.patch("/{auth_id}", response_model=AuthenticationOut, responses=errors(400, 404, 409))
def change(auth_id: str, body: AuthenticationChange, p: PlatformDep, who: AuthenticationsWrite
           ) -> AuthenticationOut:
    extra = {"expires_at": body.expires_at} if "expires_at" in body.model_fields_set else {}
    view = service.change(p.cells, p.clock, who, auth_id, name=body.name,
                          settings=body.settings, secret=body.secret, **extra)
    return _out(view)


@router.delete("/{auth_id}", status_code=204, response_class=Response, responses=errors(404))
def delete(auth_id: str, p: PlatformDep, who: AuthenticationsWrite) -> Response:
    service.delete_authentication(p.cells, p.clock, who, auth_id)
    return Response(status_code=204)


@router.post("/{auth_id}/test", response_model=ConnectionTestOut, responses=errors(404))
async def test(auth_id: str, p: PlatformDep, who: AuthenticationsWrite) -> ConnectionTestOut:
    view = service.get(p.cells, who, auth_id)
    result = await credentials.test_connection(
        p.credentials, p.outbound(), region=who.region, account_id=who.account_id,
        auth_id=view.id, settings=view.settings, actor=who.actor)
    return ConnectionTestOut(ok=result.ok, message=result.message, status=result.status)


@router.post("/{auth_id}/connect", response_model=ConnectOut, responses=errors(400, 404))
def connect(auth_id: str, p: PlatformDep, who: AuthenticationsWrite) -> ConnectOut:
    return ConnectOut(authorize_url=_authorize_url(p, who, auth_id))
