"""Stored authentications (S1, S2): create, list, read, change, delete. Write-only: nothing
here returns a secret value; views carry the name, type, fingerprint, settings and dates.

At rest (S3, S6): the plain settings and the fingerprint are sealed together in `config`
(opened for listings), the secret fields and any OAuth tokens in `secret` (opened only to
make a Credential for a step call, in services/credentials.py). Both are bound to
(region, account, "authentications", id, column).

Visibility: a shared authentication belongs to the account; a personal one only to the
principal that made it (the API token now, a member when issue 5 lands). Others get the same
404 as for an id that does not exist.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.authentication_types import (
    TYPES,
    AuthType,
    check_secret,
    check_settings,
    fingerprint,
)
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import authentications, oauth_states
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller
from sealflow.vault.vault import Vault

TABLE = "authentications"
ACTIVE, PENDING, NEEDS_RECONNECT = "active", "pending", "needs_reconnect"


@dataclass(frozen=True)
class AuthenticationView:
    id: str
    name: str
    type: str
    shared: bool
    status: str
    fingerprint: str
    settings: dict[str, Any]
    expires_at: datetime | None
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None


def kind_of(type_name: str) -> AuthType:
    kind = TYPES.get(type_name)
    if kind is None:
        raise InvalidInput("invalid authentication", [Issue(
            "$.type", f"unknown authentication type {type_name!r}; one of {', '.join(TYPES)}")])
    return kind


def _check_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid authentication", [Issue("$.name", "must be 1 to 200 "
                                                                      "characters")])
    return name


def seal_config(vault: Vault, account_id: str, auth_id: str, settings: Mapping[str, Any],
                print_: str) -> str:
    return seal(vault, account_id, TABLE, auth_id, "config",
                {"settings": dict(settings), "fingerprint": print_})


def seal_secret(vault: Vault, account_id: str, auth_id: str, fields: Mapping[str, str],
                tokens: Mapping[str, Any] | None) -> str:
    return seal(vault, account_id, TABLE, auth_id, "secret",
                {"fields": dict(fields), "tokens": dict(tokens or {})})


def open_config(vault: Vault, row: Any) -> dict[str, Any]:
    value = open_(vault, row.account_id, TABLE, row.id, "config", row.config)
    return value if isinstance(value, dict) else {}


def open_secret(vault: Vault, row: Any) -> tuple[dict[str, str], dict[str, Any]]:
    """(the user's secret fields, the OAuth tokens). Callers: credentials.py only."""
    value = open_(vault, row.account_id, TABLE, row.id, "secret", row.secret) or {}
    return dict(value.get("fields") or {}), dict(value.get("tokens") or {})


def _view(vault: Vault, row: Any) -> AuthenticationView:
    config = open_config(vault, row)
    return AuthenticationView(
        id=row.id, name=row.name, type=row.type, shared=row.shared, status=row.status,
        fingerprint=str(config.get("fingerprint", "")), settings=dict(config.get("settings")
                                                                      or {}),
        expires_at=row.expires_at, created_at=row.created_at, updated_at=row.updated_at,
        last_used_at=row.last_used_at,
    )


def owner_of(caller: Caller) -> str:
    """Who owns a personal authentication: the member (a session or a member's token), else
    the API token that made it (the interim, member-less tokens)."""
    return caller.user_id or caller.token_id


def visible_to(caller: Caller) -> Any:
    """The SQL condition: rows of the caller's account it may see (shared, or its own)."""
    return and_(
        authentications.c.account_id == caller.account_id,
        or_(authentications.c.shared.is_(True),
            authentications.c.owner_id == owner_of(caller)),
    )


def load_row(conn: Connection, caller: Caller, auth_id: str) -> Any:
    row = conn.execute(
        select(authentications).where(authentications.c.id == auth_id, visible_to(caller))
    ).first()
    if row is None:
        raise NotFound(f"authentication {auth_id} not found")
    return row


def _invalid(issues: list[Issue]) -> InvalidInput:
    return InvalidInput(f"invalid authentication: {issues[0].path}: {issues[0].message}",
                        issues)


def create(
    cells: Cells, clock: Clock, caller: Caller, *, name: str, type_name: str, shared: bool,
    settings: Mapping[str, Any], secret: Mapping[str, Any], expires_at: datetime | None,
) -> AuthenticationView:
    kind = kind_of(type_name)
    name = _check_name(name)
    issues = check_settings(kind, settings) + check_secret(kind, secret, settings)
    if issues:
        raise _invalid(issues)
    if kind.oauth and expires_at is not None:
        raise _invalid([Issue("$.expires_at", "is set from the OAuth token, not by hand")])
    auth_id = str(uuid.uuid4())
    now = clock.now()
    vault = cells[caller.region].vault
    values = {
        "id": auth_id, "account_id": caller.account_id, "name": name, "type": kind.name,
        "shared": shared, "owner_id": owner_of(caller),
        # OAuth authorization code: usable once connected in the browser (oauth_connect).
        "status": PENDING if kind.name == "oauth2_code" else ACTIVE,
        "revision": 1, "expires_at": expires_at, "created_at": now, "updated_at": now,
    }
    try:
        with cells[caller.region].write() as conn:
            # Sealed inside the write transaction (keys rotate-data relies on it: a value
            # sealed before a key rotation cannot commit after its old-key check).
            values["config"] = seal_config(vault, caller.account_id, auth_id, settings,
                                           fingerprint(secret))
            values["secret"] = seal_secret(vault, caller.account_id, auth_id, secret, None)
            conn.execute(insert(authentications).values(**values))
            by_caller(cells[caller.region], conn, caller, Action.AUTHENTICATION_CREATED,
                      f"authentication:{auth_id}", now, type=kind.name, shared=shared)
            row = load_row(conn, caller, auth_id)
    except IntegrityError:
        raise Conflict(f"an authentication named {name!r} already exists") from None
    return _view(vault, row)


def get(cells: Cells, caller: Caller, auth_id: str) -> AuthenticationView:
    with cells[caller.region].read() as conn:
        row = load_row(conn, caller, auth_id)
    return _view(cells[caller.region].vault, row)


def list_authentications(cells: Cells, caller: Caller, *, limit: int, offset: int
                         ) -> list[AuthenticationView]:
    with cells[caller.region].read() as conn:
        rows = conn.execute(
            select(authentications).where(visible_to(caller))
            .order_by(authentications.c.name).limit(limit).offset(offset)
        ).all()
    vault = cells[caller.region].vault
    return [_view(vault, row) for row in rows]


_UNSET: Any = object()


def change(
    cells: Cells, clock: Clock, caller: Caller, auth_id: str, *, name: str | None = None,
    settings: Mapping[str, Any] | None = None, secret: Mapping[str, Any] | None = None,
    expires_at: datetime | None = _UNSET,
) -> AuthenticationView:
    """Rename, change settings, replace the secret (all of its fields at once), or set the
    expiry. A new secret of an OAuth kind drops its tokens: connect again."""
    vault = cells[caller.region].vault
    with cells[caller.region].write() as conn:
        row = load_row(conn, caller, auth_id)
        kind = kind_of(row.type)
        config = open_config(vault, row)
        current = dict(config.get("settings") or {})
        new_settings = current if settings is None else {**current, **settings}
        issues = [] if settings is None else check_settings(kind, new_settings)
        if secret is not None:
            issues += check_secret(kind, secret, new_settings)
        if expires_at is not _UNSET and kind.oauth:
            issues.append(Issue("$.expires_at", "is set from the OAuth token, not by hand"))
        if issues:
            raise _invalid(issues)
        values: dict[str, Any] = {"updated_at": clock.now()}
        if name is not None:
            values["name"] = _check_name(name)
        print_ = str(config.get("fingerprint", ""))
        if secret is not None:
            print_ = fingerprint(secret)
            values["secret"] = seal_secret(vault, row.account_id, row.id, secret, None)
            values["revision"] = row.revision + 1
            if kind.name == "oauth2_code":
                values["status"] = PENDING
                conn.execute(delete(oauth_states).where(
                    oauth_states.c.authentication_id == row.id))
            elif kind.oauth:
                values["status"] = ACTIVE
                values["expires_at"] = None
        if settings is not None or secret is not None:
            values["config"] = seal_config(vault, row.account_id, row.id, new_settings, print_)
        if expires_at is not _UNSET:
            values["expires_at"] = expires_at
        try:
            conn.execute(update(authentications).where(authentications.c.id == row.id)
                         .values(**values))
        except IntegrityError:
            raise Conflict(f"an authentication named {name!r} already exists") from None
        by_caller(cells[caller.region], conn, caller, Action.AUTHENTICATION_CHANGED,
                  f"authentication:{row.id}", values["updated_at"],
                  changed=[k for k, v in (("name", name), ("settings", settings),
                                          ("secret", secret)) if v is not None]
                  + (["expires_at"] if expires_at is not _UNSET else []))
        row = load_row(conn, caller, auth_id)
    return _view(vault, row)


def delete_authentication(cells: Cells, clock: Clock, caller: Caller, auth_id: str) -> None:
    """Deletes the row, its sealed secret with it. Workflows that name it fail their step
    with a clear `authentication_not_found`."""
    cell = cells[caller.region]
    with cell.write() as conn:
        row = load_row(conn, caller, auth_id)
        conn.execute(delete(oauth_states).where(oauth_states.c.authentication_id == row.id))
        conn.execute(delete(authentications).where(authentications.c.id == row.id))
        by_caller(cell, conn, caller, Action.AUTHENTICATION_DELETED,
                  f"authentication:{row.id}", clock.now(), type=row.type)


def usable_ids(conn: Connection, caller: Caller, ids: set[str]) -> set[str]:
    """Of `ids`, those the caller may name in a workflow (shared, or personal and its own)."""
    if not ids:
        return set()
    rows = conn.execute(select(authentications.c.id).where(
        authentications.c.id.in_(sorted(ids)), visible_to(caller)))
    return {r.id for r in rows}
