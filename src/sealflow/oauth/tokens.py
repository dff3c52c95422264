"""TokenSet: what a token endpoint issued, with every token held as a Secret, and the strict
parser of a token response (RFC 6749 5.1)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sealflow.core.errors import InvalidInput, Issue
from sealflow.core.secrets import Secret

FIELDS = ("access_token", "refresh_token", "expires_at", "token_type", "scope", "id_token")
# Ten years: a larger expires_in is nonsense, and timedelta would overflow long before
# an attacker-sized number is reached.
MAX_EXPIRES_IN = 10 * 365 * 24 * 3600


@dataclass(frozen=True)
class TokenSet:
    access_token: Secret
    refresh_token: Secret | None
    expires_at: datetime | None  # aware UTC: the request's start on the clock + expires_in
    token_type: str
    scope: str | None
    id_token: Secret | None = None

    def to_fields(self) -> dict[str, str | None]:
        """Plain strings for sealed storage (the vault encrypts them); never log this."""
        return {
            "access_token": self.access_token.reveal(),
            "refresh_token": self.refresh_token.reveal() if self.refresh_token else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "token_type": self.token_type,
            "scope": self.scope,
            "id_token": self.id_token.reveal() if self.id_token else None,
        }

    @classmethod
    def from_fields(cls, fields: Mapping[str, Any]) -> TokenSet:
        """The inverse of to_fields. Raises InvalidInput naming the field at fault."""
        access = fields.get("access_token")
        if not isinstance(access, str) or not access:
            raise _bad("access_token", "must be a non-empty string")
        for name in ("refresh_token", "token_type", "scope", "id_token", "expires_at"):
            if fields.get(name) is not None and not isinstance(fields[name], str):
                raise _bad(name, "must be a string or null")
        return cls(
            access_token=Secret(access, "access_token"),
            refresh_token=_secret(fields.get("refresh_token"), "refresh_token"),
            expires_at=_parse_expires_at(fields.get("expires_at")),
            token_type=fields.get("token_type") or "Bearer",
            scope=fields.get("scope"),
            id_token=_secret(fields.get("id_token"), "id_token"),
        )


class TokenResponseError(ValueError):
    """The answer is not a valid token response; the message names the field, never a
    value."""


def parse_token_response(body: Mapping[str, Any], issued_at: datetime) -> TokenSet:
    """A TokenSet from a decoded 200 answer. `issued_at` is the clock's time when the request
    was sent, so expires_at errs early, never late."""
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise TokenResponseError("the answer has no access_token")
    # token_type is REQUIRED (RFC 6749 5.1) but some providers omit it; their tokens are
    # bearer tokens in practice. Present but malformed is refused.
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or not token_type:
        raise TokenResponseError("token_type is not a non-empty string")
    for name in ("refresh_token", "scope", "id_token"):
        if body.get(name) is not None and not isinstance(body[name], str):
            raise TokenResponseError(f"{name} is not a string")
    return TokenSet(
        access_token=Secret(access, "access_token"),
        refresh_token=_secret(body.get("refresh_token"), "refresh_token"),
        expires_at=_expires_at(body.get("expires_in"), issued_at),
        token_type=token_type,
        scope=body.get("scope") or None,
        id_token=_secret(body.get("id_token"), "id_token"),
    )


def _expires_at(expires_in: Any, issued_at: datetime) -> datetime | None:
    if expires_in is None:
        return None
    # Some providers send the number as a string ("3600"); accept that, nothing looser.
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        expires_in = int(expires_in)
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not math.isfinite(expires_in)
        or not 0 <= expires_in <= MAX_EXPIRES_IN
    ):
        raise TokenResponseError("expires_in is not a number of seconds")
    return issued_at.astimezone(UTC) + timedelta(seconds=expires_in)


def _secret(value: str | None, name: str) -> Secret | None:
    return Secret(value, name) if value else None


def _parse_expires_at(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _bad("expires_at", "must be an ISO 8601 date and time") from None
    if when.tzinfo is None:
        raise _bad("expires_at", "must carry a time zone")
    return when.astimezone(UTC)


def _bad(name: str, message: str) -> InvalidInput:
    return InvalidInput(f"invalid token set: {name} {message}", [Issue(f"$.{name}", message)])
