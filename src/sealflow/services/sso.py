"""Single sign-on with OpenID Connect (SPEC I4): an account's provider, the login through it,
members made just in time, and the "SSO required" policy.

`start` finds the account's provider (discovery through the SSRF-guarded outbound client),
makes a state (`<region>.<random>`, so the callback finds the cell, like oauth_connect), a
PKCE verifier and a nonce, and keeps the state's hash with the verifier and nonce sealed
(single use, STATE_TTL). `finish` takes the state once, exchanges the code with the
verifier, and validates the id_token with Authlib's JOSE: signature against the provider's
JWKS, issuer, audience, expiry and the nonce kept at `start`. The member is the one this
(issuer, sub) signed in as before, else the account's member with the token's verified
e-mail, else a new member with the account's default role. Then a session, exactly as a
password login makes one. No message carries the code, a token, the verifier or the nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import authlib.deprecate  # noqa: F401 (it adds an "always" filter when first imported)
import httpx
from sqlalchemy import Connection, delete, insert, select
from sqlalchemy.exc import IntegrityError

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import ConnectorError, SealflowError
from sealflow.core.secrets import Secret
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import sso_identities, sso_providers, sso_states, users
from sealflow.oauth.client import OAuthClientConfig, OAuthError, exchange_code, new_authorization
from sealflow.regions.cells import Cells
from sealflow.services import sessions
from sealflow.services.accounts import Unauthenticated
from sealflow.services.users import Identity, email_hash, find_by_email, normalize_email

with warnings.catch_warnings():  # Authlib 1.x points at joserfc; authlib.jose still works
    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken
    from authlib.jose.errors import JoseError

STATE_TTL = timedelta(minutes=10)
DISCOVERY_TTL = timedelta(minutes=5)
START_PATH = "/v1/auth/sso/start"
# Binds a login to the browser that started it (RFC 9700 4.7.1): without it, someone could
# have a victim's browser finish the attacker's own login (login CSRF).
BROWSER_COOKIE = "__Host-sealflow_sso"
CALLBACK_PATH = "/v1/auth/sso/callback"
SCOPES = ("openid", "email", "profile")
# Asymmetric signatures only: never "none", never a MAC keyed by the client secret.
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
              "EdDSA"]
LEEWAY_S = 60
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_BODY_BYTES = 256 * 1024
# A member made by SSO has no password: this never verifies (not a hash of any hasher).
NO_PASSWORD = "!sso"  # noqa: S105 (a marker, not a password)


class SsoFailed(SealflowError):
    """The SSO login could not finish; the message is fit for the user's browser."""

    code = "sso_failed"


class SsoRequired(Unauthenticated):
    """The account requires single sign-on: passwords are refused (HTTP 401)."""

    code = "sso_required"


@dataclass(frozen=True)
class SsoLogin:
    session: sessions.NewSession
    region: str
    account_id: str
    user_id: str
    role: str
    created: bool  # the member was made just now


@dataclass(frozen=True)
class SsoStart:
    url: str  # the provider's authorize URL
    browser: str = field(repr=False)  # the value of BROWSER_COOKIE for this login


@dataclass(frozen=True)
class _Provider:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    auth_method: str


# Discovery documents and key sets, by URL, for DISCOVERY_TTL (a login needs both twice).
_cache: dict[str, tuple[datetime, dict[str, Any]]] = {}


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _https(url: Any) -> bool:
    try:
        parts = urlsplit(url) if isinstance(url, str) else None
    except ValueError:
        return False
    return bool(parts and parts.scheme == "https" and parts.hostname and not parts.fragment
                and not parts.username and not parts.password)


async def _get_json(http: httpx.AsyncClient, clock: Clock, url: str, *, fresh: bool = False
                    ) -> dict[str, Any]:
    now = clock.now()
    cached = _cache.get(url)
    if cached is not None and cached[0] > now and not fresh:
        return cached[1]
    shown = urlsplit(url)._replace(query="").geturl()
    try:
        async with http.stream("GET", url, headers={"Accept": "application/json"},
                               timeout=TIMEOUT, follow_redirects=False) as response:
            raw = b""
            async for chunk in response.aiter_bytes():
                raw += chunk
                if len(raw) > MAX_BODY_BYTES:
                    raise SsoFailed(f"{shown} answered more than {MAX_BODY_BYTES} bytes")
    except ConnectorError as exc:  # the SSRF guard's refusal
        raise SsoFailed(f"{shown} refused: {exc.message}", retryable=exc.retryable) from None
    except httpx.HTTPError as exc:
        raise SsoFailed(f"{shown} could not be reached ({type(exc).__name__})",
                        retryable=True) from None
    if response.status_code != 200:
        raise SsoFailed(f"{shown} answered HTTP {response.status_code}",
                        retryable=response.status_code >= 500)
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SsoFailed(f"{shown} did not answer a JSON object")
    _cache[url] = (now + DISCOVERY_TTL, body)
    return body


async def _discover(http: httpx.AsyncClient, clock: Clock, issuer: str) -> _Provider:
    doc = await _get_json(http, clock, issuer.rstrip("/") + "/.well-known/openid-configuration")
    if doc.get("issuer") != issuer:
        raise SsoFailed("the provider's discovery document names another issuer")
    urls = {k: doc.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")}
    bad = [k for k, v in urls.items() if not _https(v)]
    if bad:
        raise SsoFailed(f"the provider's discovery document has no https {bad[0]}")
    methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    method = "client_secret_basic" if "client_secret_basic" in methods else "client_secret_post"
    return _Provider(issuer, str(urls["authorization_endpoint"]), str(urls["token_endpoint"]),
                     str(urls["jwks_uri"]), method)


def _region_of(cells: Cells, account_id: str) -> tuple[str, Any]:
    for region in cells:
        with cells[region].read() as conn:
            row = conn.execute(select(sso_providers).where(
                sso_providers.c.account_id == account_id)).first()
        if row is not None:
            return region, row
    raise SsoFailed("single sign-on is not set up for this account")


def required(conn: Connection, account_id: str) -> bool:
    """Whether the account refuses its members' passwords (SSO required)."""
    return bool(conn.execute(select(sso_providers.c.required).where(
        sso_providers.c.account_id == account_id)).scalar())


def refuse_password(account_id: str) -> SsoRequired:
    return SsoRequired(f"this account requires single sign-on: log in at "
                       f"{START_PATH}?account={account_id}")


# --- the login ------------------------------------------------------------------------------
def _client(provider: _Provider, row: Any, nonce: str | None = None) -> OAuthClientConfig:
    return OAuthClientConfig(
        token_url=provider.token_endpoint, client_id=row.client_id,
        authorize_url=provider.authorization_endpoint, scopes=SCOPES,
        auth_method=provider.auth_method,  # type: ignore[arg-type]
        extra_authorize_params={"nonce": nonce} if nonce else {})


async def start(cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient], *,
                account_id: str, redirect_uri: str) -> SsoStart:
    """The provider's authorize URL for a login to `account_id` (a new state each time),
    and the browser binding to set as BROWSER_COOKIE."""
    region, row = _region_of(cells, account_id)
    provider = await _discover(http(), clock, row.issuer)
    nonce = secrets.token_urlsafe(32)
    state = f"{region}.{secrets.token_urlsafe(32)}"
    browser = secrets.token_urlsafe(32)
    authorization = new_authorization(_client(provider, row, nonce), redirect_uri, state=state)
    state_hash, now, cell = _sha256(state), clock.now(), cells[region]
    with cell.write() as conn:
        conn.execute(delete(sso_states).where(sso_states.c.expires_at < now))
        conn.execute(insert(sso_states).values(
            state_hash=state_hash, account_id=account_id, expires_at=now + STATE_TTL,
            browser_hash=_sha256(browser),
            verifier=seal(cell.vault, account_id, sso_states.name, state_hash, "verifier",
                          authorization.code_verifier),
            nonce=seal(cell.vault, account_id, sso_states.name, state_hash, "nonce", nonce)))
    return SsoStart(authorization.url, browser)


async def _validate(http: httpx.AsyncClient, clock: Clock, provider: _Provider, client_id: str,
                    id_token: str, nonce: str) -> dict[str, Any]:
    jwt = JsonWebToken(ALGORITHMS)
    options = {
        "iss": {"essential": True, "value": provider.issuer},
        "aud": {"essential": True, "value": client_id},
        "exp": {"essential": True},
        "sub": {"essential": True},
        "nonce": {"essential": True, "value": nonce},
    }
    for fresh in (False, True):  # a key the cached set lacks: the provider rotated, fetch again
        keys = await _get_json(http, clock, provider.jwks_uri, fresh=fresh)
        try:
            claims = jwt.decode(id_token, JsonWebKey.import_key_set(keys),
                                claims_options=options)
        except ValueError:  # no key with the token's kid
            continue
        except JoseError as exc:
            raise SsoFailed(f"the provider's id_token is not valid ({exc.error})") from None
        try:
            claims.validate(now=int(clock.now().timestamp()), leeway=LEEWAY_S)
        except JoseError as exc:
            raise SsoFailed(f"the provider's id_token is refused ({exc.error}: "
                            f"{exc.description or 'claim check failed'})") from None
        return dict(claims)
    raise SsoFailed("the provider's id_token is signed by a key it does not publish")


async def finish(cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient],
                 ident: Identity, *, state: str, code: str | None, error: str | None,
                 browser: str | None, redirect_uri: str) -> SsoLogin:
    """Takes the state (once), exchanges the code, validates the id_token and signs the
    member in. Raises SsoFailed with a message fit for the browser."""
    expired = SsoFailed("unknown or expired single sign-on request; start the login again")
    region = state.split(".", 1)[0]
    if region not in cells:
        raise expired
    cell, state_hash = cells[region], _sha256(state)
    with cell.write() as conn:
        taken = conn.execute(select(sso_states).where(
            sso_states.c.state_hash == state_hash)).first()
        if taken is not None:
            conn.execute(delete(sso_states).where(sso_states.c.state_hash == state_hash))
    if taken is None or taken.expires_at <= clock.now():
        raise expired
    if browser is None or not hmac.compare_digest(_sha256(browser), taken.browser_hash):
        raise SsoFailed("this login was started in another browser; start the login again")
    if error is not None:
        raise SsoFailed(f"the identity provider refused the login: {error[:100]}")
    if not code:
        raise SsoFailed("the identity provider sent no code; start the login again")
    try:
        return await _complete(cells, clock, http, ident, region, taken, state_hash,
                               code, redirect_uri)
    except SsoFailed as err:
        with cell.write() as conn:  # the failure is recorded for the audit trail and alerts
            cell.audit.record(conn, account_id=taken.account_id,
                              actor=Actor(ActorKind.ANONYMOUS, "sso"),
                              action=Action.LOGIN_FAILED, target=f"account:{taken.account_id}",
                              at=clock.now(), details={"factor": "sso",
                                                       "reason": err.message[:200]})
        raise


async def _complete(cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient],
                    ident: Identity, region: str, taken: Any, state_hash: str, code: str,
                    redirect_uri: str) -> SsoLogin:
    cell = cells[region]
    account_id = taken.account_id
    verifier = open_(cell.vault, account_id, sso_states.name, state_hash, "verifier",
                     taken.verifier)
    nonce = open_(cell.vault, account_id, sso_states.name, state_hash, "nonce", taken.nonce)
    with cell.read() as conn:
        row = conn.execute(select(sso_providers).where(
            sso_providers.c.account_id == account_id)).first()
    if row is None:
        raise SsoFailed("single sign-on was turned off for this account meanwhile")
    client_secret = open_(cell.vault, account_id, sso_providers.name, account_id,
                          "client_secret", row.client_secret)
    provider = await _discover(http(), clock, row.issuer)
    try:
        tokens = await exchange_code(_client(provider, row), Secret(client_secret, "sso"),
                                     code=code, code_verifier=verifier,
                                     redirect_uri=redirect_uri, http=http(), clock=clock)
    except OAuthError as err:
        raise SsoFailed(f"exchanging the code failed: {err.message}",
                        retryable=err.retryable) from None
    if tokens.id_token is None:
        raise SsoFailed("the identity provider answered no id_token")
    claims = await _validate(http(), clock, provider, row.client_id,
                             tokens.id_token.reveal(), nonce)
    user, created = _member(cells, clock, ident, region, row, claims)
    session = sessions.create(cells, clock, ident, region=region, account_id=account_id,
                              user_id=user.id, method="sso")
    return SsoLogin(session=session, region=region, account_id=account_id, user_id=user.id,
                    role=user.role, created=created)


def _member(cells: Cells, clock: Clock, ident: Identity, region: str, provider: Any,
            claims: dict[str, Any]) -> tuple[Any, bool]:
    """The member these claims sign in as, made just in time if need be."""
    cell, account_id = cells[region], provider.account_id
    subject = _sha256(f"{provider.issuer}\n{claims['sub']}")
    with cell.read() as conn:
        known = conn.execute(select(users).join(
            sso_identities, sso_identities.c.user_id == users.c.id).where(
            sso_identities.c.account_id == account_id,
            sso_identities.c.subject_hash == subject, users.c.account_id == account_id)).first()
    if known is not None:
        if known.disabled_at is not None:
            raise SsoFailed("this member is disabled")
        return known, False
    email = claims.get("email")
    if not isinstance(email, str) or "@" not in email or claims.get("email_verified") is not True:
        raise SsoFailed("the identity provider sent no verified e-mail address")
    email = normalize_email(email)
    now = clock.now()
    with cell.read() as conn:
        existing = find_by_email(conn, ident, email)
    if existing is not None and existing.account_id != account_id:
        raise SsoFailed("that e-mail address is a member of another account")
    if existing is not None and existing.disabled_at is not None:
        raise SsoFailed("this member is disabled")
    user_id = existing.id if existing is not None else str(uuid.uuid4())
    name = claims.get("name") if isinstance(claims.get("name"), str) else None
    name = (name or email.partition("@")[0]).strip()[:200] or email
    try:
        with cell.write() as conn:
            if existing is None:
                conn.execute(insert(users).values(
                    id=user_id, account_id=account_id, email_hash=email_hash(ident, email),
                    email=seal(cell.vault, account_id, users.name, user_id, "email", email),
                    name=seal(cell.vault, account_id, users.name, user_id, "name", name),
                    password_hash=NO_PASSWORD, role=provider.default_role, created_at=now))
            conn.execute(delete(sso_identities).where(  # one left by a removed member
                sso_identities.c.account_id == account_id,
                sso_identities.c.subject_hash == subject))
            conn.execute(insert(sso_identities).values(
                account_id=account_id, subject_hash=subject, user_id=user_id, created_at=now))
            if existing is None:  # made just in time: on the trail like an invited member
                cell.audit.record(conn, account_id=account_id,
                                  actor=Actor(ActorKind.USER, user_id),
                                  action=Action.MEMBER_JOINED, target=f"user:{user_id}", at=now,
                                  details={"via": "sso", "role": provider.default_role})
            made = conn.execute(select(users).where(users.c.id == user_id)).one()
    except IntegrityError:  # the same person's two logins raced: the other one made it
        raise SsoFailed("this login raced another one; start the login again",
                        retryable=True) from None
    return made, existing is None
