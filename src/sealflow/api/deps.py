"""Request dependencies: the platform, the calling account (an API token, or a member's
session cookie with its CSRF token), the per-account rate limit."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sealflow.api.access_log import Pseudonymiser, load_or_create_key
from sealflow.api.errors import ApiError
from sealflow.bootstrap import Platform
from sealflow.services import accounts, second_factor, sessions, staff_access
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity

# Methods that change state: with a session cookie they need the X-CSRF-Token header.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# What a session may reach while its account requires a second factor the member has not
# enrolled yet: enrolling one, reading itself, logging out.
_ENROLMENT_PATHS = frozenset({"/v1/me", "/v1/me/totp", "/v1/me/totp/confirm", "/v1/auth/logout",
                              "/v1/auth/logout-all"})

# What an API token may never reach, whatever its scopes: a member's second factor (a stolen
# token must not be able to enrol one and lock the member out of logging in).
_SESSION_ONLY_PATHS = frozenset({"/v1/me/totp", "/v1/me/totp/confirm"})

bearer = HTTPBearer(auto_error=False, description="An account API token (sf_<region>_...)")


def platform(request: Request) -> Platform:
    return request.app.state.platform  # type: ignore[no-any-return]


class RateLimiter:
    """Token bucket per account (W5: 30 requests/s, bursts of 50). In-process: each API node
    enforces it for the requests it serves."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float | None = None) -> float:
        """Take one token; returns 0 when allowed, else the seconds until one is free."""
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate


def identity(request: Request) -> Identity:
    """The identity services' parts (the pepper, the hasher), built on first use."""
    state = request.app.state
    ident: Identity | None = getattr(state, "identity", None)
    if ident is None:
        settings = platform(request).settings
        ident = state.identity = Identity.build(settings.data_dir, settings.sessions)
    return ident


def client_pseudonym(request: Request) -> str:
    """The client's address as the access log shows it (never the address itself)."""
    state = request.app.state
    pseudonymise: Pseudonymiser | None = getattr(state, "pseudonymise", None)
    if pseudonymise is None:
        key = load_or_create_key(platform(request).settings.access_log_key_file())
        pseudonymise = state.pseudonymise = Pseudonymiser(key)
    return pseudonymise(request.client.host if request.client else "unknown")


def _session_caller(request: Request, p: Platform, token: str) -> Caller:
    user = sessions.resolve(p.cells, p.clock, identity(request), token)
    if request.method in UNSAFE_METHODS and not sessions.csrf_ok(
            token, request.headers.get(sessions.CSRF_HEADER)):
        raise ApiError(403, f"missing or wrong {sessions.CSRF_HEADER} header (the csrf_token "
                       "given at login and by GET /v1/me)", code="csrf_failed")
    if (not user.totp_enabled and second_factor.require_totp(user.account_settings)
            and request.url.path not in _ENROLMENT_PATHS):
        raise ApiError(403, "this account requires a second factor: enrol one first "
                       "(POST /v1/me/totp)", code="second_factor_enrolment_required")
    return Caller(region=user.region, account_id=user.account_id,
                  token_id=f"session:{user.session_id}", role=user.role, user_id=user.user_id,
                  method=user.method)


def _grant_caller(request: Request, p: Platform, who: Caller, grant_id: str) -> Caller:
    """Platform staff reading a customer's account through an access grant (I7): the
    request is recorded before it runs (services.staff_access.use), or refused (403)."""
    route = request.scope.get("route")
    template = getattr(route, "path", None) or request.url.path
    return staff_access.use(p.cells, p.clock, who, grant_id.strip(), method=request.method,
                            route=template, path=request.url.path)


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    p = platform(request)
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    if credentials is not None:
        who = accounts.authenticate(p.cells, credentials.credentials, p.clock)
        if request.url.path in _SESSION_ONLY_PATHS:
            raise ApiError(403, "a second factor is managed from a login session, not with an "
                           "API token", code="session_required")
    elif cookie:
        who = _session_caller(request, p, cookie)
    else:
        raise ApiError(401, "missing API token (Authorization: Bearer sf_...) or session",
                       code="unauthenticated", headers={"WWW-Authenticate": "Bearer"})
    wait = request.app.state.rate_limiter.take(who.account_id)
    if wait > 0:
        limits = p.limits
        raise ApiError(
            429,
            f"rate limit exceeded (limit api_rate_per_s={limits.api_rate_per_s}, "
            f"api_burst={limits.api_burst})",
            code="rate_limited", retryable=True,
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
            extra={"limit": "api_rate_per_s"},
        )
    # After the rate limit: staff's requests count against their own account, not the
    # customer's.
    grant = request.headers.get(staff_access.GRANT_HEADER)
    if grant is not None:
        who = _grant_caller(request, p, who, grant)
    return who


CallerDep = Annotated[Caller, Depends(caller)]
PlatformDep = Annotated[Platform, Depends(platform)]
