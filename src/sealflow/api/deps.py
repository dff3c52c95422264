"""Request dependencies: the platform, the calling account, the per-account rate limit."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sealflow.api.errors import ApiError
from sealflow.bootstrap import Platform
from sealflow.services import accounts
from sealflow.services.accounts import Caller

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


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    p = platform(request)
    if credentials is None:
        raise ApiError(401, "missing API token (Authorization: Bearer sf_...)",
                       code="unauthenticated", headers={"WWW-Authenticate": "Bearer"})
    who = accounts.authenticate(p.cells, credentials.credentials)
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
    return who


CallerDep = Annotated[Caller, Depends(caller)]
PlatformDep = Annotated[Platform, Depends(platform)]
