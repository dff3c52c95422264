"""Accounts (tenants), and issuing and checking their API tokens (I5).

An account is created in a region and every row of it lives in that region's cell (R1).
The token carries its region (`sf_<region>_<secret>`, the secret 256 random bits) so a request
is routed to the right cell without a global directory (R2); only the token's SHA-256 is
stored. A token acts with a role and optional scopes (permission names), never more than its
maker: the member's current role caps the role it was made with, so a demoted member's tokens
shrink, and a removed or disabled member's stop working. Tokens the operator makes (user_id
NULL: the CLI, an account's first token) act as the account's owner. The member-facing
management (create within one's own permissions, list, revoke) is services.tokens."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, or_, select, update

from sealflow.audit.records import OPERATOR, Action, Actor, ActorKind
from sealflow.clock import Clock, SystemClock
from sealflow.core.errors import InvalidInput, Issue, NotFound, SealflowError
from sealflow.db.tables import accounts, api_tokens, users
from sealflow.identity.permissions import Permission, Role, lower_role
from sealflow.regions.cells import Cells

TOKEN_PREFIX = "sf_"  # noqa: S105 - a prefix, not a secret
TOKEN_BYTES = 32  # secrets.token_urlsafe(32): 256 random bits
MAX_EXPIRY_DAYS = 365
# last_used_at is written at most this often per token (not one write per request).
LAST_USED_EVERY = timedelta(seconds=60)
_FAILURE = "missing or invalid API token"


class Unauthenticated(SealflowError):
    code = "unauthenticated"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the account (and its region), the token or session it came with, and
    the role it acts with (identity.permissions.Role, checked by api.permissions). A session
    carries the member's role and `user_id`; an API token its effective role, its maker's
    `user_id` (None: made by the operator) and its `scopes` (permission names; None: all of
    the role's, as for a session). `method`: how a session was signed in (sessions.method;
    None for API tokens). `grant_id`: platform staff reading a customer's account through an
    access grant (services.staff_access, I7): `user_id` is then the staff member's, the role
    at most viewer, the scopes read-only."""

    region: str
    account_id: str
    token_id: str
    role: str = "owner"
    user_id: str | None = None
    scopes: frozenset[str] | None = None
    method: str | None = None
    grant_id: str | None = None

    @property
    def actor(self) -> Actor:
        """Who the audit trail names for this caller: staff under a grant, the member, else
        the token."""
        if self.grant_id is not None and self.user_id is not None:
            return Actor(ActorKind.STAFF, self.user_id)
        if self.user_id is not None:
            return Actor(ActorKind.USER, self.user_id)
        return Actor(ActorKind.TOKEN, self.token_id)


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    region: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(region: str) -> str:
    return f"{TOKEN_PREFIX}{region}_{secrets.token_urlsafe(TOKEN_BYTES)}"


def check_scopes(scopes: Iterable[str] | None, within: frozenset[Permission]
                 ) -> frozenset[str] | None:
    """The scopes as stored (None: all of the role's), or InvalidInput naming the first one
    that is not a permission or not `within` what the maker holds."""
    if scopes is None:
        return None
    names = list(scopes)
    if not names:
        raise InvalidInput("invalid scopes", [Issue(
            "$.scopes", "give at least one permission, or leave scopes out for all of yours")])
    known = {p.value for p in Permission}
    held = {p.value for p in within}
    for i, name in enumerate(names):
        if name not in known:
            raise InvalidInput("invalid scopes", [Issue(
                f"$.scopes[{i}]", f"unknown permission {name!r}; choose from "
                f"{', '.join(sorted(held))}")])
        if name not in held:
            raise InvalidInput("invalid scopes", [Issue(
                f"$.scopes[{i}]", f"{name} is beyond your own permissions")])
    return frozenset(names)


def expiry(now: datetime, days: int | None) -> datetime | None:
    """When a token made now for `days` expires (None: never), or InvalidInput."""
    if days is None:
        return None
    if not 1 <= days <= MAX_EXPIRY_DAYS:
        raise InvalidInput("invalid expiry", [Issue(
            "$.expires_in_days", f"must be 1 to {MAX_EXPIRY_DAYS} days")])
    return now + timedelta(days=days)


def create_account(cells: Cells, clock: Clock, *, name: str, region: str) -> tuple[Account, str]:
    """Create an account pinned to `region` and its first API token (returned once): the
    operator's, acting as the owner, every scope, no expiry (it invites the first owner)."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid account", [Issue("$.name", "must be 1 to 200 characters")])
    if region not in cells:
        raise InvalidInput(
            "invalid account",
            [Issue("$.region", f"unknown region {region!r}; choose one of {', '.join(cells)}")],
        )
    cell = cells[region]
    account = Account(id=str(uuid.uuid4()), name=name, region=region)
    now = clock.now()
    # The account's own keys (S2), made with it so that their creation is on the trail; made
    # before the write transaction (a KEK provider may be a network call: never under the
    # database's write lock). If the transaction then fails, the keyset guards nothing.
    key_id = cell.vault.create_keyset(account.id)
    with cell.write() as conn:
        conn.execute(
            insert(accounts).values(id=account.id, name=name, region=region, created_at=now)
        )
        token, token_id = insert_token(conn, account.id, region, "first token", now)
        cell.audit.record(conn, account_id=account.id, actor=OPERATOR, action=Action.KEY_CREATED,
                          target=f"account:{account.id}", at=now,
                          details={"key": "data", "key_id": key_id, "first_token": token_id})
    return account, token


def issue_token(
    cells: Cells, clock: Clock, *, region: str, account_id: str, name: str,
    scopes: Iterable[str] | None = None, expires_in_days: int | None = None,
) -> str:
    """An operator's token (`sealflow accounts token`): acts as the account's owner, narrowed
    to `scopes` if given, expiring after `expires_in_days` if given. Returned once."""
    stored = check_scopes(scopes, frozenset(Permission))
    now = clock.now()
    expires_at = expiry(now, expires_in_days)
    with cells[region].write() as conn:
        if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
            raise NotFound(f"account {account_id} not found in region {region}")
        token, token_id = insert_token(conn, account_id, region, name, now, scopes=stored,
                                       expires_at=expires_at)
        # An owner-level way into the account: the customer sees it on their trail.
        cells[region].audit.record(
            conn, account_id=account_id, actor=OPERATOR, action=Action.TOKEN_CREATED,
            target=f"token:{token_id}", at=now,
            details={"role": Role.OWNER.value, "scopes": None if stored is None else sorted(stored),
                     "expires_at": None if expires_at is None else expires_at.isoformat()})
        return token


def insert_token(
    conn: Connection, account_id: str, region: str, name: str, now: datetime, *,
    role: str = Role.OWNER.value, user_id: str | None = None,
    scopes: frozenset[str] | None = None, expires_at: datetime | None = None,
) -> tuple[str, str]:
    """Store a new token's hash and what it may do; answers (the token, its id)."""
    token = _new_token(region)
    token_id = str(uuid.uuid4())
    conn.execute(
        insert(api_tokens).values(
            id=token_id,
            account_id=account_id,
            name=name,
            token_hash=hash_token(token),
            created_at=now,
            user_id=user_id,
            role=role,
            scopes=None if scopes is None else json.dumps(sorted(scopes)),
            expires_at=expires_at,
        )
    )
    return token, token_id


def load_scopes(value: str | None) -> frozenset[str] | None:
    return None if value is None else frozenset(json.loads(value))


def authenticate(cells: Cells, token: str, clock: Clock | None = None) -> Caller:
    """Resolve a bearer token to its account, role and scopes, or raise Unauthenticated (one
    message for every failure, so a caller cannot tell a wrong token from a revoked or
    expired one, or one whose member is gone). Records the use (at most once a minute)."""
    failure = Unauthenticated(_FAILURE)
    if not token.startswith(TOKEN_PREFIX):
        raise failure
    region = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
    if region not in cells:
        raise failure
    now = (clock or SystemClock()).now()
    with cells[region].read() as conn:
        row = conn.execute(
            select(api_tokens.c.id, api_tokens.c.account_id, api_tokens.c.revoked_at,
                   api_tokens.c.expires_at, api_tokens.c.last_used_at, api_tokens.c.role,
                   api_tokens.c.scopes, api_tokens.c.user_id,
                   users.c.role.label("maker_role"), users.c.disabled_at,
                   users.c.account_id.label("maker_account"))
            .select_from(api_tokens.outerjoin(users, users.c.id == api_tokens.c.user_id))
            .where(api_tokens.c.token_hash == hash_token(token))
        ).first()
    if row is None or row.revoked_at is not None or (
            row.expires_at is not None and now >= row.expires_at):
        raise failure
    role = row.role
    if row.user_id is not None:
        if (row.maker_role is None or row.disabled_at is not None
                or row.maker_account != row.account_id):
            raise failure
        role = lower_role(role, row.maker_role)
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_EVERY:
        with cells[region].write() as conn:
            conn.execute(
                update(api_tokens).where(
                    api_tokens.c.id == row.id,
                    or_(api_tokens.c.last_used_at.is_(None),
                        api_tokens.c.last_used_at <= now - LAST_USED_EVERY))
                .values(last_used_at=now))
    return Caller(region=region, account_id=row.account_id, token_id=row.id, role=role,
                  user_id=row.user_id, scopes=load_scopes(row.scopes))


def get_account(cells: Cells, caller: Caller) -> Account:
    with cells[caller.region].read() as conn:
        row = conn.execute(select(accounts).where(accounts.c.id == caller.account_id)).first()
    if row is None:
        raise NotFound("account not found")
    return Account(id=row.id, name=row.name, region=row.region)


def find_account(cells: Cells, account_id: str) -> Account:
    """Find an account in whichever served cell holds it (operator commands)."""
    for region in cells:
        with cells[region].read() as conn:
            row = conn.execute(select(accounts).where(accounts.c.id == account_id)).first()
        if row is not None:
            return Account(id=row.id, name=row.name, region=row.region)
    raise NotFound(f"account {account_id} not found in any served region")


def revoke_token(cells: Cells, clock: Clock, caller: Caller) -> None:
    with cells[caller.region].write() as conn:
        conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == caller.token_id)
            .values(revoked_at=clock.now())
        )
