"""Login throttling (SPEC I6): backoff, lockout after 10 failed passwords (5 TOTP codes) in 15
minutes, ending on time. The clock is the datetime passed in: nothing sleeps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealflow.identity.throttle import (
    PASSWORD_PER_IP,
    PASSWORD_PER_USER,
    TOTP_PER_USER,
    Decision,
    LoginThrottle,
    strictest,
)

T0 = datetime(2030, 5, 6, 7, 0, 0, tzinfo=UTC)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)


def fail_as_fast_as_allowed(
    throttle: LoginThrottle, n: int, start: datetime = T0
) -> tuple[list[datetime], datetime]:
    """n failures, each as soon as the throttle allows; returns them and the time of the
    next attempt (right after the last failure)."""
    failures: list[datetime] = []
    now = start
    for _ in range(n):
        decision = throttle.decide(failures, now)
        if not decision.allowed:
            now += timedelta(seconds=decision.retry_after_s)
            assert throttle.decide(failures, now).allowed
        failures.append(now)
        now += S / 10
    return failures, now


def test_the_policies_of_the_issue() -> None:
    assert (PASSWORD_PER_USER.max_failures, PASSWORD_PER_USER.window) == (10, 15 * MIN)
    assert (TOTP_PER_USER.max_failures, TOTP_PER_USER.window) == (5, 15 * MIN)
    assert PASSWORD_PER_IP.max_failures > PASSWORD_PER_USER.max_failures


def test_no_failures_no_wait() -> None:
    assert PASSWORD_PER_USER.decide([], T0) == Decision(True, 0.0, None, 0)


def test_backoff_doubles_after_the_free_failures() -> None:
    throttle = LoginThrottle(max_failures=10, free_failures=3, base_delay=S, max_delay=10 * S)
    waits = []
    failures: list[datetime] = []
    for _ in range(9):
        failures.append(T0)
        waits.append(throttle.decide(failures, T0).retry_after_s)
    assert waits == [0, 0, 0, 1, 2, 4, 8, 10, 10]
    backoff = throttle.decide(failures, T0)
    assert not backoff.allowed and backoff.locked_until is None and backoff.failures == 9
    # Measured from the latest failure, and over once that much time has passed.
    assert throttle.decide(failures, T0 + 4 * S).retry_after_s == 6
    assert throttle.decide(failures, T0 + 10 * S) == Decision(True, 0.0, None, 9)


def test_the_11th_password_attempt_in_15_minutes_is_refused_even_if_right() -> None:
    failures, now = fail_as_fast_as_allowed(PASSWORD_PER_USER, 10)
    assert failures[-1] - failures[0] < 15 * MIN
    decision = PASSWORD_PER_USER.decide(failures, now)
    # Refused before any password is checked: the right one fares no better.
    assert not decision.allowed
    assert decision.locked_until == failures[-1] + 15 * MIN
    assert decision.retry_after_s == pytest.approx((decision.locked_until - now).total_seconds())
    assert decision.failures == 10


def test_the_lockout_ends_on_time() -> None:
    failures, _ = fail_as_fast_as_allowed(PASSWORD_PER_USER, 10)
    end = failures[-1] + 15 * MIN
    assert not PASSWORD_PER_USER.decide(failures, end - S / 1000).allowed
    after = PASSWORD_PER_USER.decide(failures, end)
    assert after == Decision(True, 0.0, None, 0)  # and the count starts afresh
    # A new lockout takes ten new failures.
    more, now = fail_as_fast_as_allowed(PASSWORD_PER_USER, 9, start=end)
    assert PASSWORD_PER_USER.decide(failures + more, now).locked_until is None
    more, now = fail_as_fast_as_allowed(PASSWORD_PER_USER, 10, start=end)
    assert PASSWORD_PER_USER.decide(failures + more, now).locked_until == more[-1] + 15 * MIN


def test_failures_spread_over_more_than_the_window_do_not_lock() -> None:
    failures = [T0 + k * 2 * MIN for k in range(30)]  # one every 2 minutes: 7-8 per window
    for k in range(1, 31):
        decision = PASSWORD_PER_USER.decide(failures[:k], failures[k - 1] + MIN)
        assert decision.locked_until is None
        assert decision.allowed


def test_the_window_is_fifteen_minutes_to_the_second() -> None:
    throttle = LoginThrottle(max_failures=3, free_failures=3)
    inside = [T0, T0 + 7 * MIN, T0 + 15 * MIN - S]
    assert throttle.decide(inside, T0 + 15 * MIN).locked_until == inside[-1] + 15 * MIN
    outside = [T0, T0 + 7 * MIN, T0 + 15 * MIN]
    assert throttle.decide(outside, T0 + 15 * MIN).allowed


def test_the_sixth_totp_code_in_15_minutes_is_refused() -> None:
    failures, now = fail_as_fast_as_allowed(TOTP_PER_USER, 4)
    assert TOTP_PER_USER.decide(failures, now + MIN).allowed
    failures, now = fail_as_fast_as_allowed(TOTP_PER_USER, 5)
    decision = TOTP_PER_USER.decide(failures, now)
    assert decision.locked_until == failures[-1] + 15 * MIN
    assert TOTP_PER_USER.decide(failures, failures[-1] + 15 * MIN).allowed


def test_order_and_old_failures_do_not_matter() -> None:
    failures, now = fail_as_fast_as_allowed(PASSWORD_PER_USER, 10)
    ancient = [T0 - timedelta(days=d) for d in range(1, 50)]
    assert PASSWORD_PER_USER.decide(list(reversed(failures)) + ancient, now) == (
        PASSWORD_PER_USER.decide(failures, now)
    )
    assert PASSWORD_PER_USER.horizon(now) == now - 30 * MIN


@given(
    st.lists(st.integers(min_value=0, max_value=3 * 3600), max_size=40),
    st.integers(min_value=0, max_value=4 * 3600),
)
def test_dropping_failures_older_than_the_horizon_changes_nothing(
    offsets: list[int], at: int
) -> None:
    failures = [T0 + k * S for k in offsets]
    now = T0 + at * S
    kept = [f for f in failures if f > PASSWORD_PER_USER.horizon(now)]
    assert PASSWORD_PER_USER.decide(kept, now) == PASSWORD_PER_USER.decide(failures, now)


def test_strictest_of_user_and_ip() -> None:
    ok = Decision(True, 0.0, None, 2)
    quiet = Decision(True, 0.0, None, 0)
    backoff = Decision(False, 4.0, None, 5)
    locked = Decision(False, 600.0, T0, 10)
    assert strictest(ok, quiet) == ok
    assert strictest(ok, backoff) == backoff
    assert strictest(backoff, locked, ok) == locked
    assert strictest() == Decision(True)


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        PASSWORD_PER_USER.decide([], datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_failures": 0}, "max_failures"),
        ({"free_failures": -1}, "free_failures"),
        ({"max_failures": 3, "free_failures": 4}, "free_failures"),
        ({"window": timedelta(0)}, "positive"),
        ({"base_delay": timedelta(0)}, "positive"),
        ({"max_delay": timedelta(milliseconds=1)}, "max_delay"),
        ({"lockout": 14 * MIN}, "lockout"),
    ],
)
def test_settings_are_checked(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LoginThrottle(**kwargs)  # type: ignore[arg-type]
