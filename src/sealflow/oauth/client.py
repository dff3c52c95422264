"""The OAuth 2.0 client (SPEC S1): authorization code with PKCE (RFC 6749 4.1, RFC 7636),
refresh with rotation, and client credentials (RFC 6749 4.4).

Everything network-bound takes the caller's httpx client and clock: in production the
SSRF-guarded outbound client, in tests one that trusts the test CA and a clock that does not
sleep. Tokens come back as Secrets in a TokenSet; failures as OAuthError, whose message never
carries a token, code, verifier or secret.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue
from sealflow.core.secrets import Secret
from sealflow.oauth.errors import OAuthError
from sealflow.oauth.token_endpoint import request_tokens, with_retries
from sealflow.oauth.tokens import TokenSet

__all__ = [
    "Authorization",
    "OAuthClientConfig",
    "OAuthError",
    "TokenSet",
    "client_credentials",
    "exchange_code",
    "new_authorization",
    "refresh",
]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "none"]
AUTH_METHODS: tuple[AuthMethod, ...] = ("client_secret_basic", "client_secret_post", "none")
# Parameters this module sets itself; a config may not override them, or it could turn
# PKCE off or send the code somewhere else.
_AUTHORIZE_RESERVED = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state",
     "code_challenge", "code_challenge_method"}
)  # fmt: skip
_TOKEN_RESERVED = frozenset(
    {"grant_type", "code", "code_verifier", "redirect_uri", "refresh_token",
     "client_id", "client_secret", "client_assertion", "client_assertion_type"}
)  # fmt: skip
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 3.3
_VERIFIER = re.compile(r"[A-Za-z0-9\-._~]{43,128}")  # RFC 7636 4.1


@dataclass(frozen=True)
class OAuthClientConfig:
    """One OAuth client at one provider. Checked when built: InvalidInput names the field.

    `extra_authorize_params` go on the authorize URL (prompt, audience, resource, ...);
    `extra_token_params` on every token request (e.g. a client credentials `audience` or
    `resource`, which some providers demand)."""

    token_url: str
    client_id: str
    authorize_url: str | None = None
    scopes: tuple[str, ...] = ()
    auth_method: AuthMethod = "client_secret_basic"
    extra_authorize_params: Mapping[str, str] = field(default_factory=dict)
    extra_token_params: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        issues = _https_issues("token_url", self.token_url)
        if self.authorize_url is not None:
            issues += _https_issues("authorize_url", self.authorize_url)
        if not isinstance(self.client_id, str) or not self.client_id.strip():
            issues.append(Issue("$.client_id", "must be a non-empty string"))
        if isinstance(self.scopes, str):
            issues.append(Issue("$.scopes", "must be a list of scopes, not one string"))
        else:
            object.__setattr__(self, "scopes", tuple(self.scopes))
            for i, scope in enumerate(self.scopes):
                if not isinstance(scope, str) or not _SCOPE_TOKEN.fullmatch(scope):
                    issues.append(Issue(f"$.scopes[{i}]", "must be one scope without spaces"))
        if self.auth_method not in AUTH_METHODS:
            issues.append(Issue("$.auth_method", f"must be one of {', '.join(AUTH_METHODS)}"))
        issues += _params_issues("extra_authorize_params", self.extra_authorize_params,
                                 _AUTHORIZE_RESERVED)  # fmt: skip
        issues += _params_issues("extra_token_params", self.extra_token_params, _TOKEN_RESERVED)
        if issues:
            raise _invalid(issues)
        # Copies, so a caller mutating its dict later cannot change a built config.
        object.__setattr__(self, "extra_authorize_params", dict(self.extra_authorize_params))
        object.__setattr__(self, "extra_token_params", dict(self.extra_token_params))


@dataclass(frozen=True)
class Authorization:
    """Where to send the user, and what to keep (server side, never in the browser) until the
    redirect comes back: `state` to match it, `code_verifier` to exchange its code."""

    url: str
    state: str
    code_verifier: str = field(repr=False)


def new_authorization(
    config: OAuthClientConfig, redirect_uri: str, *, state: str | None = None
) -> Authorization:
    """An authorization request with a fresh state and PKCE S256 challenge."""
    if config.authorize_url is None:
        raise _invalid([Issue("$.authorize_url", "is required for the authorization code flow")])
    issues = _redirect_issues(redirect_uri)
    if state is not None and (not isinstance(state, str) or not state):
        issues.append(Issue("$.state", "must be a non-empty string"))
    if issues:
        raise _invalid(issues)
    state = state or secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters from the RFC 7636 alphabet
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": redirect_uri,
        **({"scope": " ".join(config.scopes)} if config.scopes else {}),
        "state": state,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
        **config.extra_authorize_params,
    }
    parts = urlsplit(config.authorize_url)
    # Keep any query the provider's authorize URL already has (some tenants need one).
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *params.items()])
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    return Authorization(url=url, state=state, code_verifier=verifier)


async def exchange_code(
    config: OAuthClientConfig,
    client_secret: Secret | None,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    http: httpx.AsyncClient,
    clock: Clock,
) -> TokenSet:
    """Trade the code the redirect brought for tokens. One attempt: a code is single-use,
    and a retry after the server consumed it would fail (and may revoke the grant)."""
    issues = [] if isinstance(code, str) and code else [Issue("$.code", "must be non-empty")]
    if not isinstance(code_verifier, str) or not _VERIFIER.fullmatch(code_verifier):
        issues.append(Issue("$.code_verifier", "must be 43 to 128 RFC 7636 characters"))
    if issues:
        raise _invalid(issues)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "redirect_uri": redirect_uri,
    }
    return await _token_request(config, client_secret, form, (code, code_verifier), http, clock)


async def refresh(
    config: OAuthClientConfig,
    client_secret: Secret | None,
    refresh_token: Secret,
    *,
    http: httpx.AsyncClient,
    clock: Clock,
    attempts: int = 3,
) -> TokenSet:
    """New tokens for a refresh token, trying up to `attempts` times on transient failures
    (network, timeout, 5xx, 429); an OAuth error answer (invalid_grant, ...) fails at once.

    If the server rotates the refresh token, the TokenSet holds the new one and the caller
    must store it (the old one is dead); if it sends none, the old one is kept. A transient
    failure AFTER the server rotated (answer lost) makes the retry present a used token, which
    a rotating server refuses as invalid_grant: no client can avoid that."""
    value = refresh_token.reveal()
    form = {"grant_type": "refresh_token", "refresh_token": value}

    async def attempt() -> TokenSet:
        return await _token_request(config, client_secret, form, (value,), http, clock)

    tokens = await with_retries(attempt, attempts=attempts, clock=clock)
    if tokens.refresh_token is None:
        tokens = dataclasses.replace(tokens, refresh_token=refresh_token)
    return tokens


async def client_credentials(
    config: OAuthClientConfig,
    client_secret: Secret | None,
    *,
    http: httpx.AsyncClient,
    clock: Clock,
) -> TokenSet:
    """An access token for the client itself (no user). One attempt; a transient failure
    says retryable=True and the step's retry policy decides."""
    form = {"grant_type": "client_credentials"}
    if config.scopes:
        form["scope"] = " ".join(config.scopes)
    return await _token_request(config, client_secret, form, (), http, clock)


async def _token_request(
    config: OAuthClientConfig,
    client_secret: Secret | None,
    form: dict[str, str],
    sent: tuple[str, ...],
    http: httpx.AsyncClient,
    clock: Clock,
) -> TokenSet:
    headers: dict[str, str] = {}
    body = {**config.extra_token_params, **form}
    secret = client_secret.reveal() if client_secret is not None else None
    if config.auth_method != "none" and not secret:
        raise _invalid([Issue("$.client_secret", f"is required for {config.auth_method}")])
    if config.auth_method == "client_secret_basic" and secret:
        # RFC 6749 2.3.1: both parts form-encoded before base64.
        pair = f"{quote(config.client_id, safe='')}:{quote(secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    else:
        body["client_id"] = config.client_id
        if config.auth_method == "client_secret_post" and secret:
            body["client_secret"] = secret
    secrets_sent = (*sent, *((secret,) if secret else ()))
    return await request_tokens(
        config.token_url, body, headers, http=http, clock=clock, sent=secrets_sent
    )


def _https_issues(name: str, url: Any) -> list[Issue]:
    if not isinstance(url, str):
        return [Issue(f"$.{name}", "must be an https URL")]
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        return [Issue(f"$.{name}", "is not a valid URL")]
    if parts.scheme != "https":
        return [Issue(f"$.{name}", f"must be an https URL, got scheme {parts.scheme!r}")]
    if not parts.hostname or not port_ok or parts.username or parts.password:
        return [Issue(f"$.{name}", "must be an https URL with a host and no user info")]
    if parts.fragment:
        return [Issue(f"$.{name}", "must not have a #fragment")]
    return []


def _redirect_issues(uri: Any) -> list[Issue]:
    # RFC 6749 3.1.2: absolute, no fragment. http is allowed for loopback development
    # callbacks only; the provider matches it exactly against its registration anyway.
    if not isinstance(uri, str):
        return [Issue("$.redirect_uri", "must be an absolute URL")]
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return [Issue("$.redirect_uri", "must be an absolute http(s) URL")]
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
        return [Issue("$.redirect_uri", "must be https (http only for loopback)")]
    if parts.fragment:
        return [Issue("$.redirect_uri", "must not have a #fragment")]
    return []


def _params_issues(name: str, params: Any, reserved: frozenset[str]) -> list[Issue]:
    if not isinstance(params, Mapping):
        return [Issue(f"$.{name}", "must be an object of strings")]
    issues = []
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            issues.append(Issue(f"$.{name}", "keys and values must be strings"))
        elif key in reserved:
            issues.append(Issue(f"$.{name}.{key}", "is set by sealflow and cannot be overridden"))
    return issues


def _invalid(issues: list[Issue]) -> InvalidInput:
    first = issues[0]
    return InvalidInput(f"invalid OAuth client: {first.path[2:]} {first.message}", issues)
