"""Accounts (tenants) and their interim API tokens.

An account is created in a region and every row of it lives in that region's cell (R1).
The token carries its region (`sf_<region>_<secret>`) so a request is routed to the right cell
without a global directory (R2); only the token's SHA-256 is stored. Issue 5 replaces these
tokens with scoped, expiring ones."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import insert, select, update

from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound, SealflowError
from sealflow.db.tables import accounts, api_tokens
from sealflow.regions.cells import Cells

TOKEN_PREFIX = "sf_"  # noqa: S105 - a prefix, not a secret


class Unauthenticated(SealflowError):
    code = "unauthenticated"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the account (and its region), the token or session it came with, and
    the role it acts with (identity.permissions.Role, checked by api.permissions). A session
    login carries the member's role and `user_id`; today's interim API tokens carry no user
    and act as the account's owner, until scoped tokens (issue 5) carry their own scope."""

    region: str
    account_id: str
    token_id: str
    role: str = "owner"
    user_id: str | None = None


@dataclass(frozen=True)
class Account:
    id: str
    name: str
    region: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _new_token(region: str) -> str:
    return f"{TOKEN_PREFIX}{region}_{secrets.token_urlsafe(32)}"


def create_account(cells: Cells, clock: Clock, *, name: str, region: str) -> tuple[Account, str]:
    """Create an account pinned to `region` and its first API token (returned once)."""
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
    with cell.write() as conn:
        conn.execute(
            insert(accounts).values(id=account.id, name=name, region=region, created_at=now)
        )
        token = _insert_token(conn, account.id, region, "first token", now)
    return account, token


def issue_token(cells: Cells, clock: Clock, *, region: str, account_id: str, name: str) -> str:
    with cells[region].write() as conn:
        if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first() is None:
            raise NotFound(f"account {account_id} not found in region {region}")
        return _insert_token(conn, account_id, region, name, clock.now())


def _insert_token(conn, account_id: str, region: str, name: str, now) -> str:  # type: ignore[no-untyped-def]
    token = _new_token(region)
    conn.execute(
        insert(api_tokens).values(
            id=str(uuid.uuid4()),
            account_id=account_id,
            name=name,
            token_hash=hash_token(token),
            created_at=now,
        )
    )
    return token


def authenticate(cells: Cells, token: str) -> Caller:
    """Resolve a bearer token to its account, or raise Unauthenticated (one message for every
    failure, so a caller cannot tell a wrong token from a revoked one)."""
    failure = Unauthenticated("missing or invalid API token")
    if not token.startswith(TOKEN_PREFIX):
        raise failure
    region = token[len(TOKEN_PREFIX) :].split("_", 1)[0]
    if region not in cells:
        raise failure
    with cells[region].read() as conn:
        row = conn.execute(
            select(api_tokens.c.id, api_tokens.c.account_id, api_tokens.c.revoked_at).where(
                api_tokens.c.token_hash == hash_token(token)
            )
        ).first()
    if row is None or row.revoked_at is not None:
        raise failure
    return Caller(region=region, account_id=row.account_id, token_id=row.id)


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
