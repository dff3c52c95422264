"""The caller itself: who it is (and the session's CSRF token), and its second factor."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from sealflow.api.deps import PlatformDep, identity
from sealflow.api.identity_schemas import MeOut, RecoveryCodesOut, TotpCodeIn, TotpStartOut, errors
from sealflow.api.permissions import requires
from sealflow.identity.permissions import Permission
from sealflow.services import members, second_factor, sessions
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity

router = APIRouter(prefix="/v1/me", tags=["me"], responses=errors(401, 403, 429))
# Reading oneself and managing one's own second factor: every member may.
Self = Annotated[Caller, Depends(requires(Permission.ACCOUNT_READ))]
IdentityDep = Annotated[Identity, Depends(identity)]


@router.get("", response_model=MeOut)
def me(request: Request, who: Self, p: PlatformDep) -> MeOut:
    out = MeOut(account_id=who.account_id, region=who.region, role=who.role,
                user_id=who.user_id)
    if who.user_id is None:
        return out
    member = next((m for m in members.list_members(p.cells, who) if m.id == who.user_id), None)
    token = request.cookies.get(sessions.COOKIE_NAME)
    return out.model_copy(update={
        "email": member.email if member else None, "name": member.name if member else None,
        "totp_enabled": bool(member and member.totp_enabled),
        "csrf_token": sessions.csrf_token(token) if token else None})


@router.post("/totp", response_model=TotpStartOut, responses=errors(409))
def start_totp(who: Self, p: PlatformDep) -> TotpStartOut:
    """Starts enrolling an authenticator app: scan the QR code, then confirm with a code."""
    enrolment = second_factor.start(p.cells, p.clock, who)
    return TotpStartOut(otpauth_uri=enrolment.uri, qr_svg=enrolment.qr_svg)


@router.post("/totp/confirm", response_model=RecoveryCodesOut,
             responses=errors(400, 409, 422))
def confirm_totp(body: TotpCodeIn, who: Self, p: PlatformDep, ident: IdentityDep
                 ) -> RecoveryCodesOut:
    """Enables the second factor; answers 10 single-use recovery codes, once."""
    codes = second_factor.confirm(p.cells, p.clock, ident, who, body.code)
    return RecoveryCodesOut(recovery_codes=codes)


@router.delete("/totp", status_code=204, responses=errors(400, 409, 422))
def remove_totp(body: TotpCodeIn, who: Self, p: PlatformDep, ident: IdentityDep) -> None:
    second_factor.disable(p.cells, p.clock, ident, who, body.code)
