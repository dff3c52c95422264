"""Errors the core raises. Each says what went wrong and whether retrying can help."""

from __future__ import annotations

from dataclasses import dataclass


class SealflowError(Exception):
    """Base error: `code` is stable and machine-readable, `retryable` tells callers whether
    the same call may succeed later."""

    code = "error"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retryable: bool | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if retryable is not None:
            self.retryable = retryable

    def as_dict(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "retryable": self.retryable}


class LimitExceeded(SealflowError):
    """A technical limit (W5) was hit. `limit` is the setting's name, so the message can tell
    the operator which knob to turn."""

    code = "limit_exceeded"

    def __init__(self, limit: str, limit_value: float | int, message: str):
        super().__init__(f"{message} (limit {limit}={limit_value})")
        self.limit = limit
        self.limit_value = limit_value

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "limit": self.limit, "limit_value": self.limit_value}


class StepFailed(SealflowError):
    """A step ended in error after its retries (or on an error that is not retried)."""

    code = "step_failed"


class ConnectorError(SealflowError):
    """Raised by connectors. `retryable` marks third-party failures (network errors, 5xx,
    429) that the retry policy may retry; `retry_after` is a server's Retry-After in
    seconds, when it sent one."""

    code = "connector_error"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        details: dict[str, object] | None = None,
    ):
        super().__init__(message, code=code, retryable=retryable)
        self.retry_after = retry_after
        self.details = details or {}

    def as_dict(self) -> dict[str, object]:
        out = super().as_dict()
        if self.details:
            out["details"] = self.details
        return out


class NotFound(SealflowError):
    code = "not_found"


class Conflict(SealflowError):
    code = "conflict"


class InvalidInput(SealflowError):
    """Bad input from a user. `issues` lists (json_path, message) pairs."""

    code = "invalid"

    def __init__(self, message: str, issues: list[Issue] | None = None):
        super().__init__(message)
        self.issues = issues or []

    def as_dict(self) -> dict[str, object]:
        return {**super().as_dict(), "issues": [i.as_dict() for i in self.issues]}


@dataclass(frozen=True)
class Issue:
    """One validation problem at a JSON path such as `$.steps[2].input.url`."""

    path: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}
