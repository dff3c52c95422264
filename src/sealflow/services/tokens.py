"""Members' API tokens (I5): make one (shown once), list them, revoke one.

A token is made with the caller's role and, at most, the caller's own permissions: a scope the
caller does not hold is refused (422 naming it), so a token can never make a stronger one. It
expires after 90 days unless told otherwise (at most 365). Everyone lists and revokes their
own tokens (the maker's: a member's, or the operator's for an operator token); a caller
holding tokens.manage lists and revokes every token of the account. Checking a token at use
time is services.accounts.authenticate."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select, update

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.db.tables import api_tokens
from sealflow.identity.permissions import Permission, has_permission, permissions_of
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller, check_scopes, expiry, insert_token, load_scopes
from sealflow.services.audited import by_caller

DEFAULT_EXPIRY_DAYS = 90


@dataclass(frozen=True)
class TokenView:
    id: str
    name: str
    role: str
    scopes: list[str] | None
    user_id: str | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True)
class NewToken:
    view: TokenView
    token: str  # shown once


def _view(row: Any) -> TokenView:
    scopes = load_scopes(row.scopes)
    return TokenView(
        id=row.id, name=row.name, role=row.role,
        scopes=None if scopes is None else sorted(scopes), user_id=row.user_id,
        created_at=row.created_at, expires_at=row.expires_at,
        last_used_at=row.last_used_at, revoked_at=row.revoked_at,
    )


def create(
    cells: Cells, clock: Clock, caller: Caller, *, name: str,
    scopes: Iterable[str] | None = None, expires_in_days: int | None = DEFAULT_EXPIRY_DAYS,
) -> NewToken:
    """A new token acting with the caller's role, narrowed to `scopes` (each within the
    caller's own permissions; None: the caller's own scopes, i.e. all of its role's for a
    session). `expires_in_days` None means never: the API always gives a number."""
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid token", [Issue("$.name", "must be 1 to 200 characters")])
    stored = (caller.scopes if scopes is None else
              check_scopes(scopes, permissions_of(caller.role, caller.scopes)))
    now = clock.now()
    expires_at = expiry(now, expires_in_days)
    with cells[caller.region].write() as conn:
        token, token_id = insert_token(
            conn, caller.account_id, caller.region, name, now, role=caller.role,
            user_id=caller.user_id, scopes=stored, expires_at=expires_at)
        by_caller(cells[caller.region], conn, caller, Action.TOKEN_CREATED,
                  f"token:{token_id}", now, role=caller.role,
                  scopes=None if stored is None else sorted(stored),
                  expires_at=None if expires_at is None else expires_at.isoformat())
    view = TokenView(id=token_id, name=name, role=caller.role,
                     scopes=None if stored is None else sorted(stored), user_id=caller.user_id,
                     created_at=now, expires_at=expires_at, last_used_at=None, revoked_at=None)
    return NewToken(view=view, token=token)


def _visible(caller: Caller):  # type: ignore[no-untyped-def]
    """The SQL condition: the tokens of the caller's account it may list and revoke."""
    mine = api_tokens.c.account_id == caller.account_id
    if has_permission(caller.role, Permission.TOKENS_MANAGE, caller.scopes):
        return mine
    maker = (api_tokens.c.user_id.is_(None) if caller.user_id is None
             else api_tokens.c.user_id == caller.user_id)
    return and_(mine, maker)


def list_tokens(cells: Cells, caller: Caller) -> list[TokenView]:
    """The caller's own tokens, or every token of the account with tokens.manage; revoked
    and expired ones included. Never the token itself (only its hash is kept)."""
    with cells[caller.region].read() as conn:
        rows = conn.execute(select(api_tokens).where(_visible(caller))
                            .order_by(api_tokens.c.created_at, api_tokens.c.id)).all()
    return [_view(r) for r in rows]


def revoke(cells: Cells, clock: Clock, caller: Caller, token_id: str) -> None:
    """Revoke a token (at once: the next request with it answers 401). Revoking a revoked
    token changes nothing; one the caller may not see is not found."""
    cell, now = cells[caller.region], clock.now()
    with cell.write() as conn:
        found = conn.execute(select(api_tokens.c.id).where(
            _visible(caller), api_tokens.c.id == token_id)).first()
        if found is None:
            raise NotFound(f"token {token_id} not found")
        if conn.execute(update(api_tokens).where(api_tokens.c.id == token_id,
                                                 api_tokens.c.revoked_at.is_(None))
                        .values(revoked_at=now)).rowcount:
            by_caller(cell, conn, caller, Action.TOKEN_REVOKED, f"token:{token_id}", now)
