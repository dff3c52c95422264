"""The alert rules (A4), each a small function over one cell (or the process) that returns
the alerts it sees. Deduplication and sending are the evaluator's (alerts.evaluate).

- brute_force: `brute_force_failures` login.failed records for one target (a member id, or
  the keyed hash of an unknown e-mail) or one client (the IP's pseudonym) within the window.
- staff_access: each staff.access_granted / staff.access_used record.
- decryption_failures: the process's decryption failure counter grew by the threshold or
  more since the last evaluation.
- audit_chain: the records appended since the last check do not chain (audit.verify's
  per-record check), the last checked record changed, or the append-only triggers are gone.
- purge_backlog: executions past retention and not purged above the threshold.
- workflow_failures: failed / finished executions in the window above the threshold (with
  at least `failure_rate_min_executions` finished)."""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, case, func, or_, select

from sealflow.alerts.sinks import Alert
from sealflow.audit import verify
from sealflow.audit.log import GENESIS, iter_records
from sealflow.audit.records import Action
from sealflow.core.executions import Status
from sealflow.db.tables import audit_records, executions
from sealflow.monitoring.collect import purge_backlog
from sealflow.monitoring.settings import AlertRules

WATCHED = (Action.LOGIN_FAILED, Action.STAFF_ACCESS_GRANTED, Action.STAFF_ACCESS_USED)
MAX_KEYS = 100_000  # brute-force windows kept in memory (oldest dropped past it)


@dataclass(frozen=True)
class Seen:
    seq: int
    action: str
    at: datetime
    body: dict[str, Any]


def first_seq_since(conn: Connection, since: datetime) -> int:
    """The seq just before the first record at or after `since` (binary search on seq: the
    log has no index on time, and records are appended in time order)."""
    hi = int(conn.execute(select(func.max(audit_records.c.seq))).scalar() or 0)
    lo = 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        at = conn.execute(select(audit_records.c.at).where(audit_records.c.seq == mid)).scalar()
        if at is not None and at < since:
            lo = mid
        else:
            hi = mid - 1
    return lo


def watched_records(conn: Connection, after: int, limit: int = 20_000) -> list[Seen]:
    """Records of the watched actions after seq `after` (a LIKE narrows the scan; the parsed
    action decides)."""
    patterns = [audit_records.c.record.like(f'%"action":"{a.value}"%') for a in WATCHED]
    rows = conn.execute(
        select(audit_records.c.seq, audit_records.c.at, audit_records.c.record)
        .where(audit_records.c.seq > after, or_(*patterns))
        .order_by(audit_records.c.seq).limit(limit)).all()
    out = []
    for seq, at, text in rows:
        body = json.loads(text)
        if body.get("action") in {a.value for a in WATCHED}:
            out.append(Seen(int(seq), str(body["action"]), at, body))
    return out


class BruteForce:
    """Recent login failures per key, in memory (bounded: `threshold` times per key)."""

    def __init__(self, rules: AlertRules) -> None:
        self.threshold = rules.brute_force_failures
        self.window = timedelta(seconds=rules.brute_force_window_s)
        self._times: dict[str, deque[datetime]] = defaultdict(
            lambda: deque(maxlen=self.threshold))

    @staticmethod
    def keys(record: dict[str, Any]) -> list[str]:
        keys = [f"target:{record.get('target')}"]
        details = record.get("details") or {}
        client = details.get("client") or details.get("ip")
        if client:
            keys.append(f"client:{client}")
        return keys

    def add(self, seen: Seen) -> None:
        for key in self.keys(seen.body):
            self._times[key].append(seen.at)
        while len(self._times) > MAX_KEYS:
            self._times.pop(next(iter(self._times)))

    def over(self, now: datetime, region: str) -> list[Alert]:
        alerts = []
        for key, times in list(self._times.items()):
            recent = [t for t in times if t >= now - self.window]
            if not recent:
                del self._times[key]
                continue
            if len(recent) >= self.threshold:
                alerts.append(Alert(
                    "brute_force", f"{region}:{key}", region,
                    f"{len(recent)} failed logins for {key} within "
                    f"{int(self.window.total_seconds())} s", now,
                    {"failures": len(recent), "window_s": self.window.total_seconds(),
                     "subject": key}))
        return alerts


def staff_alerts(records: Iterable[Seen], region: str, now: datetime) -> list[Alert]:
    out = []
    for seen in records:
        if seen.action not in (Action.STAFF_ACCESS_GRANTED, Action.STAFF_ACCESS_USED):
            continue
        actor = (seen.body.get("actor") or {}).get("id")
        account = seen.body.get("account_id")
        out.append(Alert(
            "staff_access", f"{region}:{seen.action}:{actor}:{account}", region,
            f"{seen.action} by staff {actor} on account {account}", now,
            {"seq": seen.seq, "action": seen.action, "staff": actor, "account_id": account,
             "target": seen.body.get("target")}))
    return out


@dataclass(frozen=True)
class ChainCheck:
    problems: list[str]
    seq: int  # the last record checked good
    hash: str


def check_chain(conn: Connection, region: str, seq: int, hash_: str | None) -> ChainCheck:
    """Verify the records after `seq` link onto `hash_` (the chain hash of record `seq` when
    it was last checked), with audit.verify's per-record checks."""
    problems = [f"append-only triggers missing: {', '.join(m)}"
                for m in [verify._missing_triggers(conn)] if m]
    prev = hash_ or GENESIS
    if seq > 0:
        anchor = conn.execute(select(audit_records.c.hash)
                              .where(audit_records.c.seq == seq)).scalar()
        if anchor != hash_:
            problems.append(f"record {seq}, checked before, changed or was removed")
            return ChainCheck(problems, seq, prev)
    expected = seq + 1
    for row in iter_records(conn, after=seq):
        fault = verify._check_record(row, int(row.seq), expected, prev, region)
        if fault is not None:
            problems.append(str(fault))
            break
        prev, expected = str(row.hash), int(row.seq) + 1
    return ChainCheck(problems, expected - 1, prev)


def failure_rate(conn: Connection, since: datetime) -> tuple[int, int]:
    """(failed, finished) executions finished since `since`."""
    done = (Status.SUCCEEDED.value, Status.FAILED.value)
    row = conn.execute(select(
        func.count(),
        func.sum(case((executions.c.status == Status.FAILED.value, 1), else_=0)))
        .where(executions.c.finished_at >= since, executions.c.status.in_(done))).one()
    return int(row[1] or 0), int(row[0] or 0)


def cell_metrics_alerts(conn: Connection, rules: AlertRules, region: str,
                        now: datetime) -> list[Alert]:
    alerts = []
    backlog = purge_backlog(conn, now)
    if backlog > rules.purge_backlog:
        alerts.append(Alert("purge_backlog", region, region,
                            f"{backlog} executions past retention are not purged", now,
                            {"backlog": backlog, "threshold": rules.purge_backlog}))
    failed, finished = failure_rate(conn, now - timedelta(seconds=rules.failure_rate_window_s))
    if finished >= rules.failure_rate_min_executions and failed / finished > rules.failure_rate:
        alerts.append(Alert(
            "workflow_failures", region, region,
            f"{failed} of {finished} executions failed in the last "
            f"{int(rules.failure_rate_window_s)} s", now,
            {"failed": failed, "finished": finished, "rate": round(failed / finished, 4),
             "threshold": rules.failure_rate}))
    return alerts
