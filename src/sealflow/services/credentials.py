"""The authentication store seen from a step call (engine.interceptors.CredentialProvider):
opens a stored authentication with the vault, just before the connector call, and keeps
OAuth tokens fresh (S1).

- OAuth authorization code: the access token is refreshed when it expires within
  REFRESH_SKEW_S, and again when the API answers 401 (the interceptor asks with
  force_refresh). A rotated refresh token replaces the old one in the same write. Refresh is
  retried twice on transient failures (oauth.client.refresh); an answer that the grant is no
  longer valid marks the authentication `needs_reconnect` and fails the step with a clear,
  non-retryable `auth_refresh_failed`.
- OAuth client credentials: a token is fetched when there is none or it is about to expire.

Concurrent refreshes: one at a time per authentication in this process (a lock), and a
compare-and-set on `revision` across processes; the loser reloads and uses the winner's
tokens instead of spending its (possibly rotated-away) refresh token.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select, update

from sealflow.audit.records import SYSTEM, Action, Actor
from sealflow.clock import Clock
from sealflow.connectors.base import Credential
from sealflow.core.authentication_types import TYPES
from sealflow.core.errors import ConnectorError
from sealflow.core.secrets import Secret
from sealflow.db.tables import authentications
from sealflow.oauth.client import (
    OAuthClientConfig,
    OAuthError,
    TokenSet,
    client_credentials,
    refresh,
)
from sealflow.regions.cells import Cell, Cells
from sealflow.services.authentications import (
    ACTIVE,
    NEEDS_RECONNECT,
    PENDING,
    open_config,
    open_secret,
    seal_secret,
)

REFRESH_SKEW_S = 60.0
LAST_USED_EVERY_S = 60.0  # last_used_at is written at most this often per authentication


def client_config(settings: Mapping[str, Any]) -> OAuthClientConfig:
    return OAuthClientConfig(
        token_url=settings["token_url"],
        client_id=settings["client_id"],
        authorize_url=settings.get("authorize_url"),
        scopes=tuple(settings.get("scopes") or ()),
        auth_method=settings.get("auth_method", "client_secret_basic"),
        extra_authorize_params=dict(settings.get("authorize_params") or {}),
        extra_token_params=dict(settings.get("token_params") or {}),
    )


@dataclass
class _Opened:
    row: Any
    settings: dict[str, Any]
    fields: dict[str, str]
    tokens: dict[str, Any]


class StoredCredentials:
    """The CredentialProvider of a platform: one per process."""

    def __init__(self, cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient]
                 ) -> None:
        self._cells = cells
        self._clock = clock
        self._http = http
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, region: str, account_id: str, auth_id: str, *,
                  force_refresh: bool = False, used_by: Mapping[str, str] | None = None,
                  actor: Actor = SYSTEM) -> Credential:
        """The decrypted credential. Its use is on the audit trail before it is handed out
        (A2: if the record cannot be written, nobody gets the secret)."""
        cell = self._cells[region]
        opened = self._open(cell, account_id, auth_id)
        kind = TYPES[opened.row.type]
        self._check_usable(opened.row)
        refreshed = kind.oauth and (force_refresh or self._stale(opened.tokens))
        # On the trail before any of it is used, the refresh token's trip to the
        # authorization server included (A2).
        self._record_use(cell, opened.row, actor, dict(used_by or {}), refreshed=refreshed)
        if refreshed:
            opened = await self._refresh(cell, opened, force_refresh)
        return self._credential(opened)

    # -- reading ---------------------------------------------------------------------------
    def _open(self, cell: Cell, account_id: str, auth_id: str) -> _Opened:
        with cell.read() as conn:
            row = conn.execute(select(authentications).where(
                authentications.c.id == auth_id, authentications.c.account_id == account_id,
            )).first()
        if row is None:
            raise ConnectorError(f"authentication {auth_id} does not exist (deleted?)",
                                 code="authentication_not_found")
        config = open_config(cell.vault, row)
        fields, tokens = open_secret(cell.vault, row)
        return _Opened(row, dict(config.get("settings") or {}), fields, tokens)

    def _check_usable(self, row: Any) -> None:
        if row.status == PENDING:
            raise ConnectorError(
                f"authentication {row.name!r} is not connected yet: finish its OAuth connect "
                "in the browser (POST /v1/authentications/{id}/connect)",
                code="auth_not_connected")
        if row.status == NEEDS_RECONNECT:
            raise ConnectorError(
                f"authentication {row.name!r} must be connected again: its last OAuth refresh "
                "was refused", code="auth_needs_reconnect")
        kind = TYPES[row.type]
        if not kind.oauth and row.expires_at is not None and row.expires_at <= self._clock.now():
            raise ConnectorError(
                f"authentication {row.name!r} expired at {row.expires_at.isoformat()}; "
                "replace its secret or its expiry", code="auth_expired")

    def _stale(self, tokens: Mapping[str, Any]) -> bool:
        if not tokens.get("access_token"):
            return True
        expires = TokenSet.from_fields(tokens).expires_at
        return expires is not None and expires - timedelta(seconds=REFRESH_SKEW_S) <= \
            self._clock.now()

    def _credential(self, opened: _Opened) -> Credential:
        row = opened.row
        fields: dict[str, Secret | str] = {
            k: v for k, v in opened.settings.items() if isinstance(v, str)}
        for name, value in opened.fields.items():
            fields[name] = Secret(value, row.name)
        if opened.tokens.get("access_token"):
            fields["access_token"] = Secret(opened.tokens["access_token"], row.name)
        also = tuple(Secret(opened.tokens[k], row.name) for k in ("refresh_token", "id_token")
                     if opened.tokens.get(k))
        return Credential(id=row.id, name=row.name, type=row.type, fields=fields,
                          also_secret=also)

    def _record_use(self, cell: Cell, row: Any, actor: Actor, used_by: dict[str, Any], *,
                    refreshed: bool) -> None:
        """The audit record of this decryption, and last_used_at (at most once a minute)."""
        now = self._clock.now()
        with cell.write() as conn:
            cell.audit.record(conn, account_id=row.account_id, actor=actor,
                              action=Action.AUTHENTICATION_DECRYPTED,
                              target=f"authentication:{row.id}", at=now,
                              details={**used_by, "refreshed": refreshed})
            if row.last_used_at is None or \
                    (now - row.last_used_at).total_seconds() >= LAST_USED_EVERY_S:
                conn.execute(update(authentications).where(authentications.c.id == row.id)
                             .values(last_used_at=now))

    # -- OAuth -----------------------------------------------------------------------------
    async def _refresh(self, cell: Cell, opened: _Opened, forced: bool) -> _Opened:
        row = opened.row
        lock = self._locks.setdefault(row.id, asyncio.Lock())
        async with lock:
            latest = self._open(cell, row.account_id, row.id)
            fresh = not self._stale(latest.tokens)
            if fresh and (latest.row.revision != row.revision or not forced):
                return latest  # refreshed meanwhile (here or by another process)
            return await self._fetch(cell, latest)

    async def _fetch(self, cell: Cell, opened: _Opened) -> _Opened:
        row = opened.row
        config = client_config(opened.settings)
        secret = opened.fields.get("client_secret")
        client_secret = Secret(secret, row.name) if secret else None
        try:
            if row.type == "oauth2_client":
                tokens = await client_credentials(config, client_secret, http=self._http(),
                                                  clock=self._clock)
            else:
                refresh_token = opened.tokens.get("refresh_token")
                if not refresh_token:
                    self._mark_needs_reconnect(cell, row)
                    raise ConnectorError(
                        f"authentication {row.name!r}: the access token expired and the "
                        "authorization server gave no refresh token; connect it again",
                        code="auth_refresh_failed")
                tokens = await refresh(config, client_secret, Secret(refresh_token, row.name),
                                       http=self._http(), clock=self._clock)
        except OAuthError as err:
            if not err.retryable:
                latest = self._open(cell, row.account_id, row.id)
                if latest.row.revision != row.revision:
                    return latest  # another process refreshed with the rotated token
                if row.type == "oauth2_code":
                    self._mark_needs_reconnect(cell, row)
            raise ConnectorError(
                f"authentication {row.name!r}: getting a new OAuth access token failed: "
                f"{err.message}", code="auth_refresh_failed", retryable=err.retryable,
            ) from None
        stored = tokens.to_fields()
        with cell.write() as conn:
            conn.execute(
                update(authentications)
                .where(authentications.c.id == row.id,
                       authentications.c.revision == row.revision)
                .values(secret=seal_secret(cell.vault, row.account_id, row.id, opened.fields,
                                           stored),
                        revision=row.revision + 1, status=ACTIVE,
                        expires_at=tokens.expires_at, updated_at=self._clock.now())
            )
        # When the compare-and-set lost, another process stored newer tokens: reading back
        # gives theirs, and ours (already replaced at the server when rotated) are dropped.
        return self._open(cell, row.account_id, row.id)

    def _mark_needs_reconnect(self, cell: Cell, row: Any) -> None:
        with cell.write() as conn:
            conn.execute(update(authentications)
                         .where(authentications.c.id == row.id,
                                authentications.c.revision == row.revision)
                         .values(status=NEEDS_RECONNECT, updated_at=self._clock.now()))


@dataclass(frozen=True)
class ConnectionTest:
    ok: bool | None  # None: nothing could be called (no test_url for a static secret)
    message: str
    status: int | None = None


async def test_connection(credentials: StoredCredentials, http: httpx.AsyncClient, *,
                          region: str, account_id: str, auth_id: str, settings: Mapping[str, Any],
                          actor: Actor) -> ConnectionTest:
    """Gets the credential as a step would (OAuth: a token is fetched or refreshed), then,
    when the authentication has a `test_url`, calls it with the credential injected. The
    message names the outcome, never a value or the response body."""
    from sealflow.connectors.http import apply_auth  # the one place auth is put on a request

    try:
        credential = await credentials.get(region, account_id, auth_id, actor=actor,
                                           used_by={"test": "connection"})
    except ConnectorError as err:
        return ConnectionTest(False, err.message)
    test_url = settings.get("test_url")
    if not test_url:
        if TYPES[credential.type].oauth:
            return ConnectionTest(True, "an access token was obtained (set test_url to also "
                                        "call the API)")
        return ConnectionTest(None, "no test_url setting: nothing to call")
    headers: dict[str, str] = {}
    params: dict[str, Any] = {}
    apply_auth(credential, headers, params)
    shown = str(httpx.URL(test_url).copy_with(query=None, fragment=None))
    try:
        response = await http.get(test_url, headers=headers, params=params, timeout=15.0)
    except httpx.HTTPError as err:
        return ConnectionTest(False, f"GET {shown} failed: {type(err).__name__}")
    ok = response.status_code < 400
    return ConnectionTest(ok, f"HTTP {response.status_code} from GET {shown}",
                          response.status_code)
