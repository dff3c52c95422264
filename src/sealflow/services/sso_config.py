"""An account's OpenID Connect provider (SPEC I4): read, set (its discovery document must
answer) and remove it; owners only (`sso.manage`). The login through it is services.sso."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import delete, insert, select, update

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.db.sealed import seal
from sealflow.db.tables import sso_providers, sso_states
from sealflow.identity.permissions import Role
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller
from sealflow.services.sso import SsoFailed, _discover, _https


@dataclass(frozen=True)
class SsoConfig:
    account_id: str
    issuer: str
    client_id: str
    default_role: str
    required: bool
    created_at: datetime
    updated_at: datetime



def _config(row: Any) -> SsoConfig:
    return SsoConfig(account_id=row.account_id, issuer=row.issuer, client_id=row.client_id,
                     default_role=row.default_role, required=bool(row.required),
                     created_at=row.created_at, updated_at=row.updated_at)


def get_config(cells: Cells, caller: Caller) -> SsoConfig:
    with cells[caller.region].read() as conn:
        row = conn.execute(select(sso_providers).where(
            sso_providers.c.account_id == caller.account_id)).first()
    if row is None:
        raise NotFound("single sign-on is not set up for this account")
    return _config(row)


async def put_config(cells: Cells, clock: Clock, http: Callable[[], httpx.AsyncClient],
                     caller: Caller, *, issuer: str, client_id: str, client_secret: str,
                     default_role: str, required: bool) -> SsoConfig:
    """Sets the account's provider; its discovery document must answer (checked here)."""
    issues = []
    if not _https(issuer) or urlsplit(issuer).query:
        issues.append(Issue("$.issuer", "must be an https URL without query or fragment"))
    if not client_id.strip():
        issues.append(Issue("$.client_id", "must be non-empty"))
    if not client_secret:
        issues.append(Issue("$.client_secret", "must be non-empty"))
    if default_role not in {r.value for r in Role} - {Role.OWNER.value}:
        issues.append(Issue("$.default_role", "must be admin, builder, operator or viewer "
                                              "(a member made by SSO is never an owner)"))
    if issues:
        raise InvalidInput(f"invalid SSO configuration: {issues[0].path[2:]} "
                           f"{issues[0].message}", issues)
    try:
        await _discover(http(), clock, issuer)
    except SsoFailed as exc:
        raise InvalidInput(f"invalid SSO configuration: issuer: {exc.message}",
                           [Issue("$.issuer", exc.message)]) from None
    cell, account_id, now = cells[caller.region], caller.account_id, clock.now()
    values = {
        "issuer": issuer, "client_id": client_id, "default_role": default_role,
        "required": required, "updated_at": now,
        "client_secret": seal(cell.vault, account_id, sso_providers.name, account_id,
                              "client_secret", client_secret),
    }
    with cell.write() as conn:
        changed = conn.execute(update(sso_providers).where(
            sso_providers.c.account_id == account_id).values(**values)).rowcount
        if not changed:
            conn.execute(insert(sso_providers).values(account_id=account_id, created_at=now,
                                                      **values))
        by_caller(cell, conn, caller, Action.SETTINGS_CHANGED, f"account:{account_id}", now,
                  section="sso", issuer=issuer, default_role=default_role, required=required)
    return get_config(cells, caller)


def delete_config(cells: Cells, clock: Clock, caller: Caller) -> None:
    cell = cells[caller.region]
    with cell.write() as conn:
        gone = conn.execute(delete(sso_providers).where(
            sso_providers.c.account_id == caller.account_id)).rowcount
        if not gone:
            raise NotFound("single sign-on is not set up for this account")
        conn.execute(delete(sso_states).where(sso_states.c.account_id == caller.account_id))
        by_caller(cell, conn, caller, Action.SETTINGS_CHANGED, f"account:{caller.account_id}",
                  clock.now(), section="sso", removed=True)
