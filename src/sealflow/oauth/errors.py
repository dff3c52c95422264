"""OAuthError: every failure of a token request, told without a secret in it.

The message names the endpoint (scheme, host and path of the token URL: a query string could
carry a key) and the server's error code and description. The description is the server's
text, so it is cut short, stripped of control characters, and scrubbed of every value this
request sent (code, verifier, refresh token, client secret) in case the server echoes one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from sealflow.core.errors import SealflowError

MAX_DESCRIPTION_CHARS = 200
# RFC 6749 5.2: error codes are printable ASCII without '"' and '\'.
_ERROR_CODE = re.compile(r"[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
REDACTED = "[REDACTED]"


class OAuthError(SealflowError):
    """A token request failed. `error` is the server's OAuth error code ("invalid_grant",
    "invalid_client", ...) or None when it sent none (network error, 5xx, malformed answer);
    `retryable` is True only for failures the same request may get past later (network
    errors, timeouts, 5xx, 429); `status` is the HTTP status when there was an answer;
    `retry_after` the server's Retry-After in seconds, when it sent one; `attempts` how many
    requests were made."""

    code = "oauth_failed"

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        retryable: bool = False,
        endpoint: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.error = error
        self.endpoint = endpoint
        self.status = status
        self.retry_after = retry_after
        self.attempts = attempts

    def as_dict(self) -> dict[str, object]:
        return {
            **super().as_dict(),
            "error": self.error,
            "endpoint": self.endpoint,
            "status": self.status,
            "attempts": self.attempts,
        }


def endpoint_name(url: str) -> str:
    """The URL as shown in errors: no query, fragment or user info."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def error_code(value: object) -> str | None:
    """The server's `error` field if it is a well-formed OAuth error code, else None."""
    if isinstance(value, str) and _ERROR_CODE.fullmatch(value):
        return value
    return None


def scrub(text: str, sent: Iterable[str]) -> str:
    """Server-supplied text made safe to show: every value we sent replaced, control
    characters dropped, and at most MAX_DESCRIPTION_CHARS long."""
    for value in sorted((v for v in sent if v), key=len, reverse=True):
        text = text.replace(value, REDACTED)
    text = _CONTROL.sub(" ", text).strip()
    if len(text) > MAX_DESCRIPTION_CHARS:
        text = text[: MAX_DESCRIPTION_CHARS - 1] + "…"
    return text
