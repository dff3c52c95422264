"""Account settings (policies kept as JSON in accounts.settings): the redaction rules now
(S5, D7: extra field names, detectors turned off); retention and login policies later.

The runner asks for an account's redaction policy at the start of every execution; a small
cache (TTL of the injected clock) keeps that off the database on the hot path. A change made
by another process is seen within the TTL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import select, update

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.db.tables import accounts
from sealflow.identity.permissions import Permission, authorize
from sealflow.redaction.redactor import RedactionPolicy
from sealflow.regions.cells import Cell, Cells
from sealflow.services import retention
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller

POLICY_TTL_S = 30.0
SECTIONS = ("redaction", "login", "staff", "retention")
LOGIN_KEYS = ("require_totp",)
STAFF_KEYS = ("require_approval",)


def check_login(section: Any) -> None:
    """The login policy: {"require_totp": bool} (every member must use a second factor)."""
    if not isinstance(section, dict):
        raise InvalidInput("invalid settings", [Issue("$.login", "must be an object")])
    issues = [Issue(f"$.login.{k}", f"unknown field; known: {', '.join(LOGIN_KEYS)}")
              for k in section if k not in LOGIN_KEYS]
    if "require_totp" in section and not isinstance(section["require_totp"], bool):
        issues.append(Issue("$.login.require_totp", "must be true or false"))
    if issues:
        raise InvalidInput("invalid settings", issues)


def check_staff(section: Any) -> None:
    """The staff access policy (I7, services.staff_access): {"require_approval": bool}
    (platform staff wait for an owner's approval before reading the account)."""
    if not isinstance(section, dict):
        raise InvalidInput("invalid settings", [Issue("$.staff", "must be an object")])
    issues = [Issue(f"$.staff.{k}", f"unknown field; known: {', '.join(STAFF_KEYS)}")
              for k in section if k not in STAFF_KEYS]
    if "require_approval" in section and not isinstance(section["require_approval"], bool):
        issues.append(Issue("$.staff.require_approval", "must be true or false"))
    if issues:
        raise InvalidInput("invalid settings", issues)


def _load(cell: Cell, account_id: str) -> dict[str, Any]:
    with cell.read() as conn:
        row = conn.execute(select(accounts.c.settings).where(accounts.c.id == account_id)
                           ).first()
    if row is None:
        raise NotFound("account not found")
    value = orjson.loads(row.settings) if row.settings else {}
    return value if isinstance(value, dict) else {}


def policy_for(cell: Cell, account_id: str) -> RedactionPolicy:
    """The account's redaction policy, read now (never less than the defaults)."""
    try:
        return RedactionPolicy.from_settings(_load(cell, account_id).get("redaction"))
    except (NotFound, InvalidInput):
        return RedactionPolicy.default()


def _shown(settings: dict[str, Any]) -> dict[str, Any]:
    shown = {name: settings.get(name) or {} for name in SECTIONS}
    # Retention (D3) is shown as it applies: the defaults fill what the account left unset.
    shown["retention"] = retention.policy_of_section(settings.get("retention")).to_settings()
    return shown


def read(cells: Cells, caller: Caller) -> dict[str, Any]:
    return _shown(_load(cells[caller.region], caller.account_id))


def change(cells: Cells, clock: Clock, caller: Caller,
           body: Mapping[str, Any]) -> dict[str, Any]:
    """Replaces the given sections; each is validated before anything is written."""
    unknown = [k for k in body if k not in SECTIONS]
    if unknown:
        raise InvalidInput("invalid settings", [
            Issue(f"$.{k}", f"unknown section; known: {', '.join(SECTIONS)}") for k in unknown])
    cell = cells[caller.region]
    if "redaction" in body:
        RedactionPolicy.from_settings(body["redaction"])  # InvalidInput naming the field
    if "login" in body:
        check_login(body["login"])
    if "staff" in body:
        check_staff(body["staff"])
        # Who lets platform staff in decides this policy too: owners (settings.write alone,
        # an admin's, is not enough).
        authorize(caller.role, Permission.STAFF_GRANTS_MANAGE, caller.scopes)
    if "retention" in body:
        # Checked (InvalidInput naming the field and its limit) and stored as it applies.
        body = {**body, "retention": retention.normalize(body["retention"])}
    with cell.write() as conn:
        row = conn.execute(select(accounts.c.settings).where(
            accounts.c.id == caller.account_id)).first()
        if row is None:
            raise NotFound("account not found")
        current = orjson.loads(row.settings) if row.settings else {}
        current.update(body)
        conn.execute(update(accounts).where(accounts.c.id == caller.account_id)
                     .values(settings=orjson.dumps(current).decode()))
        by_caller(cell, conn, caller, Action.SETTINGS_CHANGED, f"account:{caller.account_id}",
                  clock.now(), sections=sorted(body), settings={k: body[k] for k in body})
    return _shown(current)


class RedactionPolicies:
    """account id -> its RedactionPolicy, cached for POLICY_TTL_S."""

    def __init__(self, cells: Cells, clock: Clock, ttl_s: float = POLICY_TTL_S) -> None:
        self._cells = cells
        self._clock = clock
        self._ttl = ttl_s
        self._cache: dict[str, tuple[float, RedactionPolicy]] = {}

    def get(self, region: str, account_id: str) -> RedactionPolicy:
        now = self._clock.monotonic()
        hit = self._cache.get(account_id)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]
        policy = policy_for(self._cells[region], account_id)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[account_id] = (now, policy)
        return policy
