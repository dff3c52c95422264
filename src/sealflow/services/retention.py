"""Retention policies per account (D3): how long an execution's raw data and its debug logs
are kept after the execution finishes. Stored as the `retention` section of the account's
settings (accounts.settings, services/account_settings.py); the purge (services/purge.py)
applies them.

What each lifetime covers in the schema (db/tables.py), counted from executions.finished_at:

- execution data (`executions`, default 10 days): the raw data of an execution, i.e.
  executions.trigger_payload, .response, .result, .error and, of its step runs,
  step_runs.input, .output, .error.
- debug logs (`logs`, default 30 days): step_runs.logs, the log lines a step wrote.
- what remains (ids, workflow and version, status, timings, step names, connectors,
  attempts, durations) is kept exactly as long as the longer of the two, because it is what
  the Debug view hangs the surviving part on; then the rows go (executions and step_runs).

Each lifetime can be shortened down to 24 hours, never lengthened past its default (the
spec's promise is "deleted 10 days after", so the default is also the most an account can
ask for). Durations are written "10d", "36h" or "1d12h"; whole hours.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from sealflow.audit.records import Action, Actor
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.db.tables import accounts
from sealflow.regions.cells import Cell

MINIMUM = timedelta(hours=24)
DEFAULT_EXECUTIONS = timedelta(days=10)
DEFAULT_LOGS = timedelta(days=30)
FIELDS: dict[str, timedelta] = {"executions": DEFAULT_EXECUTIONS, "logs": DEFAULT_LOGS}
SECTION = "retention"

_DURATION = re.compile(r"^(?:(\d{1,4})d)?(?:(\d{1,6})h)?$")


def parse_duration(text: str) -> timedelta | None:
    """'10d' -> 10 days, '36h', '1d12h'; None when it is not such a duration."""
    match = _DURATION.match(text.strip().lower())
    if match is None or not any(match.groups()):
        return None
    days, hours = (int(g) if g else 0 for g in match.groups())
    return timedelta(days=days, hours=hours)


def format_duration(value: timedelta) -> str:
    hours = int(value.total_seconds() // 3600)
    days, rest = divmod(hours, 24)
    if days and rest:
        return f"{days}d{rest}h"
    return f"{days}d" if days else f"{rest}h"


@dataclass(frozen=True)
class RetentionPolicy:
    executions: timedelta = DEFAULT_EXECUTIONS  # raw execution data
    logs: timedelta = DEFAULT_LOGS  # step debug logs

    @property
    def rows(self) -> timedelta:
        """When the rows themselves go: once neither part is kept any longer."""
        return max(self.executions, self.logs)

    @classmethod
    def from_settings(cls, section: Any) -> RetentionPolicy:
        """The policy of a stored (or requested) section. Raises InvalidInput naming each
        field at fault and its limit; absent or null fields take their default."""
        if section is None:
            return cls()
        if not isinstance(section, Mapping):
            raise InvalidInput("invalid settings", [Issue("$.retention", "must be an object")])
        issues = [Issue(f"$.retention.{k}", f"unknown field; known: {', '.join(FIELDS)}")
                  for k in section if k not in FIELDS]
        values: dict[str, timedelta] = {}
        for name, default in FIELDS.items():
            raw = section.get(name)
            if raw is None:
                continue
            where = f"$.retention.{name}"
            value = parse_duration(raw) if isinstance(raw, str) else None
            if value is None:
                issues.append(Issue(where, "must be a duration in whole days or hours, "
                                           "e.g. \"10d\", \"36h\", \"1d12h\""))
            elif value < MINIMUM:
                issues.append(Issue(where, f"must be at least 24h (the minimum retention); "
                                           f"got {format_duration(value)}"))
            elif value > default:
                issues.append(Issue(where, f"must be at most {format_duration(default)} "
                                           f"(the default, which an account can only "
                                           f"shorten); got {format_duration(value)}"))
            else:
                values[name] = value
        if issues:
            raise InvalidInput("invalid settings", issues)
        return cls(**values)

    def to_settings(self) -> dict[str, str]:
        return {"executions": format_duration(self.executions),
                "logs": format_duration(self.logs)}

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        """Executions finished before these times lose that part."""
        return {"executions": now - self.executions, "logs": now - self.logs,
                "rows": now - self.rows}


def normalize(section: Any) -> dict[str, str]:
    """A requested section, checked, as it is stored (both fields, canonical spelling)."""
    return RetentionPolicy.from_settings(section).to_settings()


def _settings_of(raw: str | None) -> dict[str, Any]:
    value = orjson.loads(raw) if raw else {}
    return value if isinstance(value, dict) else {}


def policy_of_section(section: Any) -> RetentionPolicy:
    """The policy of a stored section; one that no longer passes the checks (edited by
    hand) gives the defaults, never a longer lifetime."""
    try:
        return RetentionPolicy.from_settings(section)
    except InvalidInput:
        return RetentionPolicy()


def policy_of(settings_json: str | None) -> RetentionPolicy:
    """The policy of an accounts.settings value."""
    return policy_of_section(_settings_of(settings_json).get(SECTION))


def policies(conn: Connection) -> dict[str, RetentionPolicy]:
    """Every account of the cell with its policy."""
    rows = conn.execute(select(accounts.c.id, accounts.c.settings).order_by(accounts.c.id))
    return {row.id: policy_of(row.settings) for row in rows}


def show(cell: Cell, account_id: str) -> RetentionPolicy:
    with cell.read() as conn:
        row = conn.execute(select(accounts.c.settings).where(accounts.c.id == account_id)
                           ).first()
    if row is None:
        raise NotFound(f"account {account_id} not found")
    return policy_of(row.settings)


def set_policy(cell: Cell, clock: Clock, account_id: str, *, actor: Actor,
               executions: timedelta | None = None,
               logs: timedelta | None = None) -> RetentionPolicy:
    """The operator's path (CLI): change one or both lifetimes; the other keeps its current
    value. Checked like the API's, recorded on the audit trail in the same write."""
    with cell.write() as conn:
        row = conn.execute(select(accounts.c.settings).where(accounts.c.id == account_id)
                           ).first()
        if row is None:
            raise NotFound(f"account {account_id} not found")
        current = policy_of(row.settings)
        requested = {
            "executions": format_duration(current.executions if executions is None
                                          else executions),
            "logs": format_duration(current.logs if logs is None else logs)}
        policy = RetentionPolicy.from_settings(requested)
        settings = _settings_of(row.settings)
        settings[SECTION] = policy.to_settings()
        conn.execute(update(accounts).where(accounts.c.id == account_id)
                     .values(settings=orjson.dumps(settings).decode()))
        cell.audit.record(conn, account_id=account_id, actor=actor,
                          action=Action.SETTINGS_CHANGED, target=f"account:{account_id}",
                          at=clock.now(), details={"sections": [SECTION],
                                                   "settings": {SECTION: policy.to_settings()}})
    return policy
