"""Field-name rules: a value stored under a key like `password` or `Set-Cookie` is masked
whatever it is, known secret or not.

How a key is compared: split camelCase (`apiKey` -> `api_key`, `XApiKey` -> `x_api_key`),
lower-case, turn `-`, `.` and spaces into `_`. A key matches a name when it equals it or
ends with `_` + the name: `db_password`, `X-Auth-Token` and `oauthClientSecret` match,
`token_type`, `max_tokens` and `password_policy` do not.
"""

from __future__ import annotations

import re

# Recorded HTTP requests and responses always mask these; no setting removes them.
ALWAYS_MASKED_HEADERS = frozenset(
    {"authorization", "proxy_authorization", "cookie", "set_cookie", "x_api_key"}
)

DEFAULT_FIELD_NAMES = ALWAYS_MASKED_HEADERS | frozenset(
    {
        "password", "passwd", "passphrase",
        "secret", "secrets", "client_secret", "secret_key",
        "token", "access_token", "refresh_token", "id_token", "auth_token", "api_token",
        "api_key", "apikey", "access_key", "private_key",
        "cookies", "credentials",
    }
)  # fmt: skip

MAX_FIELD_NAME_CHARS = 100

_CAMEL_WORD = re.compile(r"([a-z0-9])([A-Z])")
_CAMEL_ACRONYM = re.compile(r"([A-Z]+)([A-Z][a-z])")
_SEPARATORS = re.compile(r"[\s.\-_]+")


def normalise(key: str) -> str:
    """The comparable form of a key or a configured name ("" if nothing is left)."""
    if not key.islower():  # fast path: most keys are already lower-case
        key = _CAMEL_WORD.sub(r"\1_\2", _CAMEL_ACRONYM.sub(r"\1_\2", key))
    return _SEPARATORS.sub("_", key.lower()).strip("_")


def matches(key: str, names: frozenset[str]) -> bool:
    """Whether `key` falls under one of `names` (already normalised)."""
    key = normalise(key)
    if key in names:
        return True
    at = key.find("_")
    while at != -1:
        if key[at + 1 :] in names:
            return True
        at = key.find("_", at + 1)
    return False
