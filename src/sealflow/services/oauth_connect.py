"""Connecting an OAuth 2.0 authorization-code authentication in the browser (S1).

`start` makes a state and a PKCE verifier, keeps the state's hash and the sealed verifier
(single use, STATE_TTL), and gives the authorize URL to send the user to. The state starts
with the region (`<region>.<random>`) so the callback, which carries no API token, finds the
right cell without a global directory (R2). `finish` takes the state once, exchanges the
code with the verifier, and stores the tokens sealed; the authentication becomes active.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import delete, insert, select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, SealflowError
from sealflow.core.secrets import Secret
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import authentications, oauth_states
from sealflow.oauth.client import OAuthError, exchange_code, new_authorization
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller
from sealflow.services.authentications import (
    ACTIVE,
    load_row,
    open_config,
    open_secret,
    seal_secret,
)
from sealflow.services.credentials import client_config

STATE_TTL = timedelta(minutes=10)
# Who completes a connect: a browser back from the authorization server, holding the state.
CONNECT_CALLBACK = Actor(ActorKind.ANONYMOUS, "oauth-callback")
CALLBACK_PATH = "/oauth/callback"


class ConnectFailed(SealflowError):
    """The callback could not finish the connect; the message says why and what to do."""

    code = "oauth_connect_failed"


@dataclass(frozen=True)
class Connected:
    authentication_id: str
    name: str


def _hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def start(cells: Cells, clock: Clock, caller: Caller, auth_id: str, redirect_uri: str) -> str:
    """The authorize URL for this authentication (a new state each time)."""
    cell = cells[caller.region]
    with cell.read() as conn:
        row = load_row(conn, caller, auth_id)
    if row.type != "oauth2_code":
        raise InvalidInput("only oauth2_code authentications are connected in the browser",
                           [Issue("$.type", f"is {row.type}")])
    settings = dict(open_config(cell.vault, row).get("settings") or {})
    state = f"{caller.region}.{secrets.token_urlsafe(32)}"
    authorization = new_authorization(client_config(settings), redirect_uri, state=state)
    state_hash = _hash(state)
    now = clock.now()
    with cell.write() as conn:
        conn.execute(delete(oauth_states).where(oauth_states.c.expires_at < now))
        conn.execute(insert(oauth_states).values(
            state_hash=state_hash, account_id=row.account_id, authentication_id=row.id,
            verifier=seal(cell.vault, row.account_id, "oauth_states", state_hash, "verifier",
                          authorization.code_verifier),
            expires_at=now + STATE_TTL,
        ))
    return str(authorization.url)


async def finish(cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient], *,
                 state: str, code: str | None, error: str | None, redirect_uri: str
                 ) -> Connected:
    """Takes the state (once), then exchanges the code. Raises ConnectFailed with a message
    fit for the user's browser (never the code, a token or the verifier)."""
    region = state.split(".", 1)[0]
    if region not in cells:
        raise ConnectFailed("unknown or expired connect request; start the connect again")
    cell = cells[region]
    state_hash = _hash(state)
    with cell.write() as conn:
        taken = conn.execute(select(oauth_states).where(
            oauth_states.c.state_hash == state_hash)).first()
        if taken is not None:
            conn.execute(delete(oauth_states).where(oauth_states.c.state_hash == state_hash))
    if taken is None or taken.expires_at <= clock.now():
        raise ConnectFailed("unknown or expired connect request; start the connect again")
    if error is not None:
        raise ConnectFailed(f"the authorization server refused the connect: {error[:100]}")
    if not code:
        raise ConnectFailed("the authorization server sent no code; start the connect again")
    verifier = open_(cell.vault, taken.account_id, "oauth_states", state_hash, "verifier",
                     taken.verifier)
    with cell.read() as conn:
        row = conn.execute(select(authentications).where(
            authentications.c.id == taken.authentication_id,
            authentications.c.account_id == taken.account_id)).first()
    if row is None:
        raise ConnectFailed("the authentication was deleted meanwhile")
    settings = dict(open_config(cell.vault, row).get("settings") or {})
    with cell.write() as conn:  # on the trail before the client secret is opened (A2)
        cell.audit.record(conn, account_id=row.account_id, actor=CONNECT_CALLBACK,
                          action=Action.AUTHENTICATION_DECRYPTED,
                          target=f"authentication:{row.id}", at=clock.now(),
                          details={"purpose": "oauth code exchange"})
    fields, _ = open_secret(cell.vault, row)
    client_secret = Secret(fields["client_secret"], row.name) if fields.get("client_secret") \
        else None
    try:
        tokens = await exchange_code(client_config(settings), client_secret, code=code,
                                     code_verifier=verifier, redirect_uri=redirect_uri,
                                     http=http(), clock=clock)
    except OAuthError as err:
        raise ConnectFailed(f"exchanging the code failed: {err.message}",
                            retryable=err.retryable) from None
    with cell.write() as conn:
        conn.execute(update(authentications).where(authentications.c.id == row.id).values(
            secret=seal_secret(cell.vault, row.account_id, row.id, fields, tokens.to_fields()),
            revision=authentications.c.revision + 1, status=ACTIVE,
            expires_at=tokens.expires_at, updated_at=clock.now()))
        cell.audit.record(conn, account_id=row.account_id, actor=CONNECT_CALLBACK,
                          action=Action.AUTHENTICATION_CHANGED,
                          target=f"authentication:{row.id}", at=clock.now(),
                          details={"changed": ["oauth tokens"], "connected": True})
    return Connected(row.id, row.name)
