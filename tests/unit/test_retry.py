"""Retry policies: validation, backoff with jitter, Retry-After, the platform policy."""

from __future__ import annotations

import math
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealflow.core.retry import (
    MAX_RETRY_AFTER_S,
    PLATFORM_RETRY,
    RetryPolicy,
    policy_from_document,
)


def test_defaults_match_w6() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 4  # 1 + 3 retries
    assert (policy.initial_interval, policy.backoff, policy.max_interval, policy.jitter) == (
        1.0,
        2.0,
        60.0,
        0.2,
    )


def test_platform_policy() -> None:
    assert PLATFORM_RETRY.max_attempts == 16  # 15 retries
    rng = random.Random(0)
    waits = [PLATFORM_RETRY.delay(n, rng=rng) for n in range(1, 16)]
    assert 27 <= waits[0] <= 30
    assert all(1620 <= w <= 1800 for w in waits[6:])  # 30 * 2**6 > 1800: capped at 30 min


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_attempts": 0}, "retry max_attempts: must be between 1 and 20, got 0"),
        ({"max_attempts": 21}, "retry max_attempts"),
        ({"max_attempts": True}, "retry max_attempts: must be an integer"),
        ({"initial_interval": 0}, "retry initial_interval: must be greater than 0"),
        ({"initial_interval": math.inf}, "retry initial_interval: must be a number"),
        ({"backoff": 0.9}, "retry backoff: must be at least 1"),
        ({"jitter": -0.1}, "retry jitter: must be between 0 and 1"),
        ({"max_interval": 0.5}, "retry max_interval: max_interval (0.5) must be at least"),
    ],
)
def test_invalid_policies_name_the_field(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        RetryPolicy(**fields)


def test_exponential_without_jitter() -> None:
    policy = RetryPolicy(max_attempts=10, initial_interval=1, backoff=2, max_interval=10, jitter=0)
    rng = random.Random(1)
    assert [policy.delay(n, rng=rng) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    constant = RetryPolicy(initial_interval=3, backoff=1, max_interval=3, jitter=0)
    assert constant.delay(10, rng=rng) == 3


def test_huge_attempt_numbers_do_not_overflow() -> None:
    policy = RetryPolicy(backoff=10, jitter=0)
    assert policy.delay(100_000, rng=random.Random()) == 60


def test_retry_after_is_a_floor_capped_at_15_minutes() -> None:
    policy = RetryPolicy(jitter=0)
    rng = random.Random()
    assert policy.delay(1, rng=rng, retry_after=5) == 5
    assert policy.delay(1, rng=rng, retry_after=0.5) == 1  # shorter than backoff: backoff
    assert policy.delay(1, rng=rng, retry_after=120) == 120  # past max_interval: honoured
    assert policy.delay(1, rng=rng, retry_after=10_000) == MAX_RETRY_AFTER_S == 900
    assert policy.delay(1, rng=rng, retry_after=-3) == 1
    assert policy.delay(1, rng=rng, retry_after=math.nan) == 1


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError, match="attempt"):
        RetryPolicy().delay(0, rng=random.Random())


def test_should_retry() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert policy.should_retry(1, True) and policy.should_retry(2, True)
    assert not policy.should_retry(3, True)
    assert not policy.should_retry(1, False)
    assert not RetryPolicy(max_attempts=1).should_retry(1, True)


def test_policy_from_document() -> None:
    assert policy_from_document(None) == RetryPolicy()
    assert policy_from_document({"max_attempts": 2, "initial_interval": 3}) == RetryPolicy(
        max_attempts=2, initial_interval=3.0
    )
    assert isinstance(policy_from_document({"backoff": 3}).backoff, float)
    with pytest.raises(ValueError, match="unknown field 'tries'"):
        policy_from_document({"tries": 2})
    with pytest.raises(ValueError, match="retry jitter"):
        policy_from_document({"jitter": 3})


policies = st.builds(
    lambda attempts, initial, factor, backoff, jitter: RetryPolicy(
        max_attempts=attempts,
        initial_interval=initial,
        max_interval=initial * factor,
        backoff=backoff,
        jitter=jitter,
    ),
    st.integers(1, 20),
    st.floats(0.001, 1000),
    st.floats(1, 1000),
    st.floats(1, 10),
    st.floats(0, 1),
)


@given(policies, st.integers(1, 10_000), st.integers(0, 2**32))
def test_delay_bounds(policy: RetryPolicy, attempt: int, seed: int) -> None:
    wait = policy.delay(attempt, rng=random.Random(seed))
    try:
        base = min(policy.initial_interval * policy.backoff ** (attempt - 1), policy.max_interval)
    except OverflowError:
        base = policy.max_interval
    assert wait <= policy.max_interval * (1 + 1e-9)
    assert wait >= base * (1 - policy.jitter) * (1 - 1e-9)
    assert wait <= base * (1 + 1e-9)


@given(policies, st.integers(1, 50), st.floats(0, 1e6))
def test_delay_honours_retry_after(policy: RetryPolicy, attempt: int, after: float) -> None:
    wait = policy.delay(attempt, rng=random.Random(0), retry_after=after)
    assert wait >= min(after, MAX_RETRY_AFTER_S)
    assert wait <= max(policy.max_interval, min(after, MAX_RETRY_AFTER_S)) * (1 + 1e-9)


@given(policies, st.integers(1, 30))
def test_delays_never_shrink_without_jitter(policy: RetryPolicy, attempt: int) -> None:
    steady = RetryPolicy(
        policy.max_attempts, policy.initial_interval, policy.backoff, policy.max_interval, 0
    )
    rng = random.Random(0)
    assert steady.delay(attempt + 1, rng=rng) >= steady.delay(attempt, rng=rng)
