"""Login throttling (SPEC I6) as a pure policy: given when the recent failures of one key (a
user, an IP address) happened and the time now, may another attempt be made? The caller
stores the failure times, asks before checking a password or code, and records a failure
only for an attempt that was allowed and failed: a refused attempt is not a failure (if it
were, an attacker could keep a user locked out for ever). Never sleeps: it answers how long
to wait, and the clock is whatever datetime is passed in (DESIGN house rule 9).

Two mechanisms, per key:
- backoff: past `free_failures` failures in the window, the next attempt waits
  base_delay * 2**(failures - free_failures - 1) after the latest failure, up to max_delay;
- lockout: once `max_failures` failures fall within one window, every attempt is refused,
  the right password included, until `lockout` after the failure that completed the count.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0
    locked_until: datetime | None = None  # set when refused by the lockout, not the backoff
    failures: int = 0  # failures in the window now, for audit and alerts


def strictest(*decisions: Decision) -> Decision:
    """One answer for several keys (the user and the IP address): the longest refusal."""
    refused = [d for d in decisions if not d.allowed]
    if not refused:
        return max(decisions, key=lambda d: d.failures, default=Decision(allowed=True))
    return max(refused, key=lambda d: d.retry_after_s)


@dataclass(frozen=True)
class LoginThrottle:
    max_failures: int = 10
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    free_failures: int = 3
    base_delay: timedelta = timedelta(seconds=1)
    max_delay: timedelta = timedelta(minutes=1)

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        if not 0 <= self.free_failures <= self.max_failures:
            raise ValueError("free_failures must be between 0 and max_failures")
        if self.window <= timedelta(0) or self.base_delay <= timedelta(0):
            raise ValueError("window and base_delay must be positive")
        if self.max_delay < self.base_delay:
            raise ValueError("max_delay must be at least base_delay")
        # So that, when a lockout ends, the failures that caused it have left the window and
        # the key starts afresh (no state beyond the failure times).
        if self.lockout < self.window:
            raise ValueError("lockout must be at least as long as window")

    def horizon(self, now: datetime) -> datetime:
        """Failures older than this can no longer matter: storage may delete them."""
        return now - self.window - self.lockout

    def decide(self, failures: Iterable[datetime], now: datetime) -> Decision:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        times = sorted(f for f in failures if f > self.horizon(now))
        recent = [f for f in times if now - f < self.window]

        locked_until = self._locked_until(times)
        if locked_until is not None and now < locked_until:
            wait = (locked_until - now).total_seconds()
            return Decision(False, wait, locked_until, failures=len(recent))

        over = len(recent) - self.free_failures
        if over > 0:
            delay = min(self.base_delay * 2 ** (over - 1), self.max_delay)
            wait = (recent[-1] + delay - now).total_seconds()
            if wait > 0:
                return Decision(False, wait, None, failures=len(recent))
        return Decision(True, 0.0, None, failures=len(recent))

    def _locked_until(self, times: list[datetime]) -> datetime | None:
        """The end of the latest lockout: `lockout` after the latest failure that was the
        max_failures-th within one window."""
        n = self.max_failures
        for i in range(len(times) - 1, n - 2, -1):
            if times[i] - times[i - n + 1] < self.window:
                return times[i] + self.lockout
        return None


# The policies sealflow uses (SPEC I6; issue 5). Per IP the limits are looser, because many
# people can share one address, but they still stop one address guessing across users.
PASSWORD_PER_USER = LoginThrottle(max_failures=10, free_failures=3)
PASSWORD_PER_IP = LoginThrottle(max_failures=50, free_failures=10)
TOTP_PER_USER = LoginThrottle(max_failures=5, free_failures=2)
