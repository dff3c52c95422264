"""Request and response bodies of logins, sessions, the second factor and members."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from sealflow.api.schemas import ErrorOut, _In
from sealflow.api.schemas import errors as _errors

_MORE = {
    403: "The role lacks the permission (`permission` names it), the X-CSRF-Token header is "
         "missing or wrong (csrf_failed), or a second factor must be enrolled first",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """schemas.errors, knowing 403 too."""
    out = _errors(*(c for c in codes if c not in _MORE))
    out.update({c: {"model": ErrorOut, "description": _MORE[c]} for c in codes if c in _MORE})
    return out

RoleName = Literal["owner", "admin", "builder", "operator", "viewer"]
# Far above any real password (the policy allows 4,096 characters after NFKC); bounds the work.
Password = Field(min_length=1, max_length=8192)


class LoginIn(_In):
    email: str = Field(min_length=1, max_length=320)
    password: str = Password
    region: Literal["us", "eu", "apac"] | None = None
    code: str | None = Field(None, max_length=32, description="TOTP code, when enabled")
    recovery_code: str | None = Field(None, max_length=64)


class SessionOut(BaseModel):
    account_id: str
    region: str
    user_id: str
    role: str
    csrf_token: str = Field(description="Send it as X-CSRF-Token with every POST, PUT, "
                                        "PATCH and DELETE made with the session cookie")
    expires_at: datetime | None = None
    totp_enrolment_required: bool = False


class LoggedOutOut(BaseModel):
    sessions_ended: int


class MeOut(BaseModel):
    account_id: str
    region: str
    role: str
    user_id: str | None = Field(description="The member; None for an operator-made API token")
    email: str | None = None
    name: str | None = None
    totp_enabled: bool = False
    csrf_token: str | None = Field(None, description="For the session cookie; None for a token")


class TotpStartOut(BaseModel):
    otpauth_uri: str
    qr_svg: str


class TotpCodeIn(_In):
    code: str = Field(min_length=1, max_length=32)


class RecoveryCodesOut(BaseModel):
    recovery_codes: list[str] = Field(description="Shown once: store them now")


class MemberOut(BaseModel):
    id: str
    email: str
    name: str
    role: str
    totp_enabled: bool
    created_at: datetime
    disabled_at: datetime | None


# What the service takes as an e-mail address (services.members._email), said in the schema.
# (The ASCII white space is spelled out: `\s` means different sets in different regex engines.)
EMAIL_PATTERN = r"^[^@ \t\n\r\f\v]+@[^@ \t\n\r\f\v]+\.[^@ \t\n\r\f\v]+$"


class InvitationIn(_In):
    email: str = Field(min_length=3, max_length=320, pattern=EMAIL_PATTERN)
    role: RoleName


class InvitationOut(BaseModel):
    id: str
    email: str
    role: str
    expires_at: datetime
    token: str = Field(description="The invitation link's token; shown once")


class AcceptIn(_In):
    token: str = Field(min_length=1, max_length=200)
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    password: str = Field(min_length=12, max_length=4096, description=(
        "At least 12 characters (after Unicode NFKC normalisation), at most 4,096; not one of "
        "the most common passwords, not your name or e-mail"))


class RoleIn(_In):
    role: RoleName
