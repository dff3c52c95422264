"""Logins (I2, I3, I5, I6): password (and second factor) for a session cookie, logout, sign
out everywhere. The cookie is `__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Lax;
its lifetime is the session's absolute timeout (the server also ends it when idle)."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from sealflow.api.deps import PlatformDep, client_pseudonym, identity
from sealflow.api.errors import ApiError
from sealflow.api.identity_schemas import LoggedOutOut, LoginIn, SessionOut, errors
from sealflow.api.permissions import public, requires
from sealflow.identity.permissions import Permission
from sealflow.services import login as login_service
from sealflow.services import sessions
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity, LoginThrottled

router = APIRouter(prefix="/v1/auth", tags=["auth"])
Member = Annotated[Caller, Depends(requires(Permission.ACCOUNT_READ))]
IdentityDep = Annotated[Identity, Depends(identity)]


@router.post("/login", response_model=SessionOut, responses=errors(400, 401, 422, 429),
             dependencies=[Depends(public("the login itself: e-mail and password"))])
def login(body: LoginIn, request: Request, response: Response, p: PlatformDep,
          ident: IdentityDep) -> SessionOut:
    """A new session for the member's e-mail and password (and `code` or `recovery_code`
    when the member has a second factor): sets the session cookie and answers the CSRF
    token. Wrong e-mail and wrong password answer alike; failures are throttled."""
    try:
        result = login_service.login(
            p.cells, p.clock, ident, email=body.email, password=body.password,
            client=client_pseudonym(request), region=body.region, code=body.code,
            recovery_code=body.recovery_code)
    except LoginThrottled as exc:
        raise ApiError(429, str(exc), code=exc.code, retryable=True,
                       headers={"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
                       ) from None
    except login_service.SecondFactorRequired as exc:
        raise ApiError(401, str(exc), code=exc.code) from None
    response.set_cookie(
        sessions.COOKIE_NAME, result.session.token, path="/", secure=True, httponly=True,
        samesite="lax", max_age=int(ident.absolute_timeout.total_seconds()))
    response.headers["Cache-Control"] = "no-store"
    return SessionOut(account_id=result.account_id, region=result.region,
                      user_id=result.user_id, role=result.role,
                      csrf_token=result.session.csrf_token,
                      expires_at=result.session.expires_at,
                      totp_enrolment_required=result.totp_enrolment_required)


def _clear(response: Response) -> None:
    response.delete_cookie(sessions.COOKIE_NAME, path="/", secure=True, httponly=True,
                           samesite="lax")


@router.post("/logout", response_model=LoggedOutOut, responses=errors(401, 403, 429))
def logout(request: Request, response: Response, who: Member, p: PlatformDep) -> LoggedOutOut:
    """Ends this session (an API token: nothing to end)."""
    token = request.cookies.get(sessions.COOKIE_NAME)
    ended = 0
    if who.user_id is not None and token:
        sessions.revoke(p.cells, p.clock, token)
        ended = 1
    _clear(response)
    return LoggedOutOut(sessions_ended=ended)


@router.post("/logout-all", response_model=LoggedOutOut, responses=errors(401, 403, 409, 429))
def logout_all(response: Response, who: Member, p: PlatformDep) -> LoggedOutOut:
    """Signs the member out everywhere: every session of theirs ends."""
    if who.user_id is None:
        raise ApiError(409, "an API token has no sessions; log in as a member",
                       code="member_required")
    ended = sessions.revoke_all(p.cells, p.clock, region=who.region,
                                account_id=who.account_id, user_id=who.user_id)
    _clear(response)
    return LoggedOutOut(sessions_ended=ended)
