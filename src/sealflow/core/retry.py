"""Retry policies (SPEC W6): exponential backoff with jitter, Retry-After honoured.

A step's `retry` block builds a RetryPolicy; PLATFORM_RETRY is for platform faults (a lost
lease, a crashed worker). The same checks serve the dataclass and the workflow validator,
so a policy that validates is a policy that can be built.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# A server's Retry-After is honoured even past max_interval, but never beyond this.
MAX_RETRY_AFTER_S = 900.0
MAX_ATTEMPTS_LIMIT = 20

RETRY_FIELDS = ("max_attempts", "initial_interval", "backoff", "max_interval", "jitter")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def field_issue(name: str, value: Any) -> str | None:
    """What is wrong with one retry field on its own, or None."""
    if name == "max_attempts":
        if not isinstance(value, int) or isinstance(value, bool):
            return "must be an integer"
        if not 1 <= value <= MAX_ATTEMPTS_LIMIT:
            return f"must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {value}"
        return None
    if not _number(value):
        return "must be a number"
    if name in ("initial_interval", "max_interval") and value <= 0:
        return f"must be greater than 0, got {value}"
    if name == "backoff" and value < 1:
        return f"must be at least 1, got {value}"
    if name == "jitter" and not 0 <= value <= 1:
        return f"must be between 0 and 1, got {value}"
    return None


def policy_issues(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(field, message) for every problem among the known fields of `values`, missing
    fields taking their defaults. Unknown fields are the caller's business."""
    issues = [
        (name, problem)
        for name in RETRY_FIELDS
        if name in values and (problem := field_issue(name, values[name])) is not None
    ]
    bad = {name for name, _ in issues}
    if not bad & {"initial_interval", "max_interval"}:
        initial = values.get("initial_interval", RetryPolicy.initial_interval)
        maximum = values.get("max_interval", RetryPolicy.max_interval)
        if maximum < initial:
            where = "max_interval" if "max_interval" in values else "initial_interval"
            issues.append(
                (where, f"max_interval ({maximum}) must be at least initial_interval ({initial})")
            )
    return issues


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a failed attempt is retried.

    `max_attempts` counts every attempt (4 = the first call and 3 retries). The wait before
    retry n is initial_interval * backoff**(n-1), capped at max_interval, then shortened by
    up to `jitter` of itself at random (so it never exceeds the cap).
    """

    max_attempts: int = 4
    initial_interval: float = 1.0
    backoff: float = 2.0
    max_interval: float = 60.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        problems = policy_issues({f.name: getattr(self, f.name) for f in fields(self)})
        if problems:
            name, message = problems[0]
            raise ValueError(f"retry {name}: {message}")

    def delay(self, attempt: int, *, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after `attempt` attempts have been made (1 after the first failure).

        A server's Retry-After (seconds) is a floor: the wait is at least that long, even past
        max_interval, but never longer than MAX_RETRY_AFTER_S (15 minutes).
        """
        if attempt < 1:
            raise ValueError(f"attempt must be at least 1, got {attempt}")
        base = self._base(attempt - 1)
        wait = base * (1.0 - self.jitter * rng.random())
        if retry_after is not None and math.isfinite(retry_after) and retry_after > 0:
            wait = max(wait, min(retry_after, MAX_RETRY_AFTER_S))
        return wait

    def _base(self, exponent: int) -> float:
        if self.backoff == 1 or exponent == 0:
            return min(self.initial_interval, self.max_interval)
        # Compare in log space: backoff**exponent overflows long before attempts run out.
        steps_to_cap = math.log(self.max_interval / self.initial_interval) / math.log(self.backoff)
        if exponent >= steps_to_cap:
            return self.max_interval
        return min(self.initial_interval * self.backoff**exponent, self.max_interval)

    def should_retry(self, attempt: int, retryable: bool) -> bool:
        """After `attempt` attempts failed: try again? Only retryable errors, and only while
        attempts remain."""
        return retryable and attempt < self.max_attempts


# Platform faults (W6): up to 15 retries, waits growing from 30 s to 30 min.
PLATFORM_RETRY = RetryPolicy(
    max_attempts=16, initial_interval=30, backoff=2, max_interval=1800, jitter=0.1
)


def policy_from_document(d: Mapping[str, Any] | None) -> RetryPolicy:
    """Build the policy of a step's `retry` block (None: the defaults). Raises ValueError
    naming the field for unknown fields or bad values."""
    if d is None:
        return RetryPolicy()
    unknown = sorted(set(d) - set(RETRY_FIELDS))
    if unknown:
        raise ValueError(f"retry: unknown field '{unknown[0]}'")
    problems = policy_issues(d)
    if problems:
        name, message = problems[0]
        raise ValueError(f"retry {name}: {message}")
    values: dict[str, Any] = {k: (v if k == "max_attempts" else float(v)) for k, v in d.items()}
    return RetryPolicy(**values)
