"""The kinds of stored authentication (S1) and what each holds: which fields are secret
(sealed in the `secret` column, never shown again), which are plain settings (shown), and
the rules a save must pass. Pure: no I/O, so the API, the CLI and the tests share one check.

Secrets shorter than MIN_SECRET_CHARS are refused: redaction (S5) masks every known secret
value wherever it appears, and a very short value would mask ordinary text.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sealflow.core.errors import Issue

MIN_SECRET_CHARS = 8
MAX_SECRET_CHARS = 16_384  # a PEM private key fits; a pasted file does not
MAX_SETTING_CHARS = 2_048

_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,100}$")
OAUTH_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


@dataclass(frozen=True)
class Field:
    name: str
    secret: bool
    required: bool = True
    # Secret fields that identify rather than protect (a basic-auth username) may be short.
    min_chars: int = MIN_SECRET_CHARS


@dataclass(frozen=True)
class AuthType:
    name: str
    description: str
    fields: tuple[Field, ...]
    # OAuth kinds get their tokens from an authorization server, not from the user.
    oauth: bool = False

    def secret_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.secret)

    def setting_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.secret)


_TEST_URL = Field("test_url", secret=False, required=False)
_OAUTH_COMMON = (
    Field("token_url", secret=False),
    Field("client_id", secret=False),
    Field("scopes", secret=False, required=False),
    Field("auth_method", secret=False, required=False),
    Field("token_params", secret=False, required=False),  # e.g. audience, resource
)

TYPES: dict[str, AuthType] = {
    t.name: t
    for t in (
        AuthType(
            "api_key",
            "An API key sent in a header or a query parameter.",
            (
                Field("key", secret=True),
                Field("in", secret=False, required=False),
                Field("param", secret=False, required=False),
                _TEST_URL,
            ),
        ),
        AuthType("bearer", "A bearer token (Authorization: Bearer ...).",
                 (Field("token", secret=True), _TEST_URL)),
        AuthType(
            "basic",
            "HTTP basic authentication (username and password).",
            (
                Field("username", secret=True, min_chars=1),
                Field("password", secret=True),
                _TEST_URL,
            ),
        ),
        AuthType(
            "oauth2_code",
            "OAuth 2.0 authorization code with PKCE; connected in the browser, refreshed "
            "automatically.",
            (
                Field("authorize_url", secret=False),
                *_OAUTH_COMMON,
                Field("authorize_params", secret=False, required=False),
                Field("client_secret", secret=True, required=False),
                _TEST_URL,
            ),
            oauth=True,
        ),
        AuthType(
            "oauth2_client",
            "OAuth 2.0 client credentials (machine to machine).",
            (*_OAUTH_COMMON, Field("client_secret", secret=True), _TEST_URL),
            oauth=True,
        ),
    )
}

# Fields the platform writes for OAuth kinds (the user never sends them).
TOKEN_FIELDS = ("access_token", "refresh_token", "id_token", "token_expires_at", "token_type",
                "scope")


def fingerprint(secret: Mapping[str, str]) -> str:
    """A short, stable identifier of what the user entered, so they can tell two secrets
    apart without seeing either. Derived from the user's fields only (not from OAuth tokens
    that change on every refresh)."""
    digest = hashlib.sha256()
    for name in sorted(secret):
        if name in TOKEN_FIELDS:
            continue
        for part in (name, secret[name]):
            raw = part.encode("utf-8")
            digest.update(len(raw).to_bytes(4, "big") + raw)
    hexed = digest.hexdigest()[:16]
    return "sha256:" + ":".join(hexed[i : i + 4] for i in range(0, 16, 4))


# Extra request parameters may not override what the protocol (and its security) sets.
_RESERVED_PARAMS = {
    "authorize_params": frozenset({"state", "code_challenge", "code_challenge_method",
                                   "redirect_uri", "client_id", "response_type", "scope"}),
    "token_params": frozenset({"grant_type", "code", "code_verifier", "redirect_uri",
                               "refresh_token", "client_id", "client_secret", "scope"}),
}


def _url_issue(value: str, *, https_only: bool) -> str | None:
    try:
        parts = urlsplit(value)
    except ValueError:
        return "must be a URL"
    schemes = ("https",) if https_only else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        return "must be an https:// URL" if https_only else "must be an http(s):// URL"
    if parts.username or parts.password:
        return "must not carry credentials; put them in the secret"
    return None


def _check_setting(kind: AuthType, name: str, value: Any, where: str) -> list[Issue]:
    if name == "scopes":
        ok = isinstance(value, list) and all(
            isinstance(s, str) and s and " " not in s and len(s) <= 200 for s in value
        )
        return [] if ok else [Issue(where, "must be a list of scope names without spaces")]
    if name in _RESERVED_PARAMS:
        ok = isinstance(value, dict) and len(value) <= 20 and all(
            isinstance(k, str) and isinstance(v, str) and len(k) <= 100 and len(v) <= 500
            for k, v in value.items()
        )
        reserved = _RESERVED_PARAMS[name]
        if ok and reserved & set(value):
            return [Issue(where, f"must not set {', '.join(sorted(reserved & set(value)))}; "
                                 "sealflow sets those")]
        return [] if ok else [Issue(where, "must be an object of short text values")]
    if not isinstance(value, str) or not value:
        return [Issue(where, "must be non-empty text")]
    if len(value) > MAX_SETTING_CHARS:
        return [Issue(where, f"must be at most {MAX_SETTING_CHARS} characters")]
    if name in ("authorize_url", "token_url"):
        problem = _url_issue(value, https_only=True)
        return [Issue(where, problem)] if problem else []
    if name == "test_url":
        problem = _url_issue(value, https_only=False)
        return [Issue(where, problem)] if problem else []
    if name == "in" and value not in ("header", "query"):
        return [Issue(where, "must be header or query")]
    if name == "param" and not _HEADER_NAME.match(value):
        return [Issue(where, "must be a header or parameter name (letters, digits, -_.)")]
    if name == "auth_method" and value not in OAUTH_AUTH_METHODS:
        return [Issue(where, f"must be one of {', '.join(OAUTH_AUTH_METHODS)}")]
    return []


def _unknown(kind: AuthType, given: Mapping[str, Any], *, secret: bool) -> list[Issue]:
    """Fields the kind does not have; a secret sent as a setting (or the reverse) is named."""
    mine = kind.secret_fields() if secret else kind.setting_fields()
    other = kind.setting_fields() if secret else kind.secret_fields()
    where, what = ("secret", "secret field") if secret else ("settings", "setting")
    known = ", ".join(f.name for f in mine) or "none"
    issues = []
    for name in given:
        if any(f.name == name for f in mine):
            continue
        hint = ""
        if any(f.name == name for f in other):
            hint = " (it is a plain setting: send it in `settings`)" if secret else \
                " (it is a secret field: send it in `secret`)"
        issues.append(Issue(f"$.{where}.{name}",
                            f"unknown {what} for {kind.name}{hint}; known: {known}"))
    return issues


def check_settings(kind: AuthType, settings: Mapping[str, Any]) -> list[Issue]:
    issues = _unknown(kind, settings, secret=False)
    for field in kind.setting_fields():
        where = f"$.settings.{field.name}"
        if field.name in settings:
            issues += _check_setting(kind, field.name, settings[field.name], where)
        elif field.required:
            issues.append(Issue(where, f"is required for {kind.name}"))
    return issues


def check_secret(kind: AuthType, secret: Mapping[str, Any], settings: Mapping[str, Any]
                 ) -> list[Issue]:
    """Issues name the field and the rule, never the value."""
    issues = _unknown(kind, secret, secret=True)
    known = {f.name: f for f in kind.secret_fields()}
    needs_client_secret = settings.get("auth_method", "client_secret_basic") != "none"
    for name, field in known.items():
        where = f"$.secret.{name}"
        value = secret.get(name)
        required = field.required or (name == "client_secret" and needs_client_secret)
        if value is None:
            if required:
                issues.append(Issue(where, f"is required for {kind.name}"))
            continue
        if not isinstance(value, str):
            issues.append(Issue(where, "must be text"))
        elif len(value) < field.min_chars:
            issues.append(Issue(where, f"is too short: at least {field.min_chars} characters "
                                       "(shorter secrets would make redaction mask ordinary "
                                       "text)"))
        elif len(value) > MAX_SECRET_CHARS:
            issues.append(Issue(where, f"is too long: at most {MAX_SECRET_CHARS} characters"))
        elif name == "username" and ":" in value:
            issues.append(Issue(where, "must not contain ':' (basic authentication)"))
        elif value != value.strip(" \t") or "\x00" in value:
            issues.append(Issue(where, "must not start or end with spaces or hold NUL"))
    return issues
