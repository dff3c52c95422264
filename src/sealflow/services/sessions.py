"""Login sessions (I5): server-side rows looked up by the SHA-256 of the cookie's value.

The cookie value is `<region>_<random>` (the region finds the cell without a directory, like
API tokens). The CSRF token is derived from the cookie value (HMAC), so it can be shown again
(GET /v1/me) while only its hash is stored; a request proves it knows the session's token, which
a cross-site page cannot read. A session ends `idle_timeout` after its last request,
`absolute_timeout` after its login, at logout, or when its member signs out everywhere."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.db.tables import accounts, sessions, users
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Unauthenticated
from sealflow.services.users import Identity

COOKIE_NAME = "__Host-sealflow_session"
CSRF_HEADER = "X-CSRF-Token"
# last_seen_at is written at most this often (not one write per request).
TOUCH_EVERY = timedelta(seconds=60)


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def csrf_token(session_token: str) -> str:
    digest = hmac.new(session_token.encode(), b"sealflow csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def csrf_ok(session_token: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(csrf_token(session_token), given)


def public_id(id_hash: str) -> str:
    """The session's id as shown and logged (never the cookie value)."""
    return id_hash[:16]


@dataclass(frozen=True)
class NewSession:
    token: str  # the cookie value, shown once
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class SessionUser:
    region: str
    account_id: str
    user_id: str
    role: str
    session_id: str  # public_id
    totp_enabled: bool
    account_settings: str | None  # accounts.settings JSON (the login policy)
    method: str | None = None  # how the session was signed in (sessions.method; None: unknown)


def create(cells: Cells, clock: Clock, ident: Identity, *, region: str, account_id: str,
           user_id: str, method: str, client: str | None = None) -> NewSession:
    """A new session (a new id at every login: no session fixation). The login is recorded in
    the audit trail in the same transaction (`method`: how the member proved who they are;
    `client`: the pseudonymised address)."""
    token = f"{region}_{secrets.token_urlsafe(32)}"
    now = clock.now()
    expires = now + ident.absolute_timeout
    cell = cells[region]
    id_hash = _sha256(token)
    with cell.write() as conn:
        conn.execute(insert(sessions).values(
            id_hash=id_hash, user_id=user_id, account_id=account_id,
            csrf_hash=_sha256(csrf_token(token)), created_at=now, last_seen_at=now,
            expires_at=expires, method=method))
        cell.audit.record(conn, account_id=account_id, actor=Actor(ActorKind.USER, user_id),
                          action=Action.LOGIN_SUCCEEDED, target=f"user:{user_id}", at=now,
                          details={"method": method, "session": public_id(id_hash),
                                   "client": client})
    return NewSession(token=token, csrf_token=csrf_token(token), expires_at=expires)


def _region(cells: Cells, token: str) -> str | None:
    region = token.split("_", 1)[0]
    return region if region in set(cells) and "_" in token else None


def resolve(cells: Cells, clock: Clock, ident: Identity, token: str) -> SessionUser:
    """The member a session cookie signs in, or Unauthenticated (one message for every
    failure: unknown, expired, revoked, member disabled)."""
    failure = Unauthenticated("missing or expired session; log in again")
    region = _region(cells, token)
    if region is None:
        raise failure
    id_hash = _sha256(token)
    now = clock.now()
    with cells[region].read() as conn:
        row = conn.execute(
            select(sessions.c.account_id, sessions.c.user_id, sessions.c.last_seen_at,
                   sessions.c.expires_at, sessions.c.revoked_at, sessions.c.created_at,
                   sessions.c.method,
                   users.c.role, users.c.disabled_at, users.c.totp_enabled_at,
                   accounts.c.settings)
            .join(users, users.c.id == sessions.c.user_id)
            .join(accounts, accounts.c.id == sessions.c.account_id)
            .where(sessions.c.id_hash == id_hash)
        ).first()
    if (row is None or row.revoked_at is not None or row.disabled_at is not None
            or now >= row.expires_at or now >= row.created_at + ident.absolute_timeout
            or now - row.last_seen_at >= ident.idle_timeout):
        raise failure
    if now - row.last_seen_at >= TOUCH_EVERY:
        with cells[region].write() as conn:
            conn.execute(update(sessions).where(sessions.c.id_hash == id_hash)
                         .values(last_seen_at=now))
    return SessionUser(region=region, account_id=row.account_id, user_id=row.user_id,
                       role=row.role, session_id=public_id(id_hash),
                       totp_enabled=row.totp_enabled_at is not None,
                       account_settings=row.settings, method=row.method)


def revoke(cells: Cells, clock: Clock, token: str) -> None:
    region = _region(cells, token)
    if region is None:
        return
    cell = cells[region]
    id_hash = _sha256(token)
    now = clock.now()
    with cell.write() as conn:
        row = conn.execute(
            update(sessions).where(sessions.c.id_hash == id_hash, sessions.c.revoked_at.is_(None))
            .values(revoked_at=now).returning(sessions.c.account_id, sessions.c.user_id)).first()
        if row is not None:
            cell.audit.record(conn, account_id=row.account_id,
                              actor=Actor(ActorKind.USER, row.user_id), action=Action.LOGOUT,
                              target=f"user:{row.user_id}", at=now,
                              details={"session": public_id(id_hash)})


def revoke_all(cells: Cells, clock: Clock, *, region: str, account_id: str,
               user_id: str) -> int:
    """Sign out everywhere: every live session of the member. Returns how many ended."""
    cell = cells[region]
    now = clock.now()
    with cell.write() as conn:
        ended = conn.execute(
            update(sessions).where(sessions.c.user_id == user_id,
                                   sessions.c.account_id == account_id,
                                   sessions.c.revoked_at.is_(None))
            .values(revoked_at=now)).rowcount
        cell.audit.record(conn, account_id=account_id, actor=Actor(ActorKind.USER, user_id),
                          action=Action.SESSION_REVOKED, target=f"user:{user_id}", at=now,
                          details={"sessions": ended, "scope": "everywhere"})
    return int(ended)
