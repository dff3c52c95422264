"""Request and response bodies of /v1/authentications. No response model has a field that
could hold a secret value (S2): views carry names, types, settings, fingerprints and dates."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from sealflow.api.schemas import _In

AuthTypeName = Literal["api_key", "bearer", "basic", "oauth2_code", "oauth2_client"]
_FIELDS_DOC = ("The secret fields of the type (api_key: key; bearer: token; basic: "
               "username, password; oauth2_*: client_secret). Write-only: never returned.")


class AuthenticationCreate(_In):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    type: AuthTypeName
    shared: bool = Field(True, description="Shared with the account, or personal (usable "
                                           "only by the principal that creates it)")
    settings: dict[str, Any] = Field(default_factory=dict, description=(
        "Plain settings of the type (api_key: in, param; oauth2_*: authorize_url, token_url, "
        "client_id, scopes, auth_method, authorize_params; any: test_url)"))
    secret: dict[str, Any] = Field(default_factory=dict, description=_FIELDS_DOC)
    expires_at: AwareDatetime | None = None


class AuthenticationChange(_In):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=r"\S")
    settings: dict[str, Any] | None = None
    secret: dict[str, Any] | None = Field(None, description="Replaces every secret field. "
                                          + _FIELDS_DOC)
    expires_at: AwareDatetime | None = None


class AuthenticationOut(BaseModel):
    id: str
    name: str
    type: str
    shared: bool
    status: Literal["active", "pending", "needs_reconnect"]
    fingerprint: str
    settings: dict[str, Any]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


class AuthenticationCreated(AuthenticationOut):
    authorize_url: str | None = Field(
        None, description="oauth2_code: open this URL to connect (also POST .../connect)")


class ConnectOut(BaseModel):
    authorize_url: str


class ConnectionTestOut(BaseModel):
    ok: bool | None
    message: str
    status: int | None = None
