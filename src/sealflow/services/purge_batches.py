"""One batch of the purge (D3), in one short write transaction: what each kind of batch
selects and removes, and how the backlog is counted for a dry run. Runs, pacing, audit and
disk space are services/purge.py.

Kinds, for one account and its policy (services/retention.py says what each part is):
- "rows": executions finished before now - max(data, logs lifetime): their step_runs and
  then the executions themselves are deleted.
- "execution_data": when the logs outlive the raw data, executions finished before
  now - data lifetime keep their rows (for the logs) but lose the raw data: the trigger
  payload becomes the sealed JSON null (the column is NOT NULL), response, result and error
  NULL, and their step runs' input, output and error NULL; executions.purged |= 1.
- "step_logs": when the raw data outlives the logs, step_runs.logs becomes NULL for
  executions finished before now - logs lifetime; executions.purged |= 2.

A batch takes at most `executions` executions (oldest first, through ix_executions_retention:
account, purged value, finished_at; one index range per purged value, never a sort of the
backlog) and touches at most `step_runs` step runs, chosen by primary key. If an execution
has more step runs than that (a long loop), its step runs go over several batches and the
execution is marked (or deleted) in the batch that finds none left: every transaction is
bounded, and stopping between any two leaves a state the next run simply continues (nothing
is remembered but the data; nothing is counted twice, since a batch counts only rows its own
statements changed). Deleting by primary-key lists in small transactions is also what
PostgreSQL's VACUUM wants: few dead tuples per transaction, none held back by a long one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from sealflow.core.executions import TERMINAL
from sealflow.db.sealed import DataDestroyed, seal
from sealflow.db.tables import executions, step_runs
from sealflow.vault.vault import Vault

ROWS, EXECUTION_DATA, STEP_LOGS = "rows", "execution_data", "step_logs"
KINDS = (ROWS, EXECUTION_DATA, STEP_LOGS)
DATA_PURGED, LOGS_PURGED = 1, 2
# The executions.purged values each kind still has to visit (its bit not yet set).
PENDING: dict[str, tuple[int, ...]] = {
    ROWS: (0, DATA_PURGED, LOGS_PURGED, DATA_PURGED | LOGS_PURGED),
    EXECUTION_DATA: (0, LOGS_PURGED),
    STEP_LOGS: (0, DATA_PURGED),
}
_STEP_DATA = (step_runs.c.input, step_runs.c.output, step_runs.c.error)
_TERMINAL = sorted(str(s) for s in TERMINAL)


@dataclass(frozen=True)
class Limits:
    executions: int = 200
    step_runs: int = 1000


@dataclass(frozen=True)
class Done:
    """What one batch changed: executions deleted or marked, step runs deleted or cleared."""

    kind: str
    executions: int
    step_runs: int
    oldest: datetime | None  # finished_at of the oldest execution in the batch


def _due(account_id: str, value: int, before: datetime, since: datetime | None) -> Any:
    cond = [executions.c.account_id == account_id, executions.c.purged == value,
            executions.c.finished_at < before, executions.c.status.in_(_TERMINAL)]
    if since is not None:
        cond.append(executions.c.finished_at >= since)
    return and_(*cond)


def _step_pending(kind: str) -> Any:
    if kind == EXECUTION_DATA:
        return or_(*(c.is_not(None) for c in _STEP_DATA))
    if kind == STEP_LOGS:
        return step_runs.c.logs.is_not(None)
    return None


def run_batch(conn: Connection, vault: Vault, *, account_id: str, kind: str, value: int,
              before: datetime, limits: Limits) -> Done | None:
    """One batch of `kind` among the account's executions with executions.purged == value
    finished before `before`, in the caller's write transaction. None: nothing left there."""
    picked = conn.execute(
        select(executions.c.id, executions.c.finished_at)
        .where(_due(account_id, value, before, None))
        .order_by(executions.c.finished_at)
        .limit(limits.executions)
        # PostgreSQL with several nodes purging: each takes other rows (SQLite: one writer).
        .with_for_update(skip_locked=True)
    ).all()
    if not picked:
        return None
    ids = [row.id for row in picked]
    steps = select(step_runs.c.id).where(step_runs.c.execution_id.in_(ids))
    pending = _step_pending(kind)
    if pending is not None:
        steps = steps.where(pending)
    # No ORDER BY: any of them will do, and the lookup stays on uq_step_runs_execution_path
    # (ordering by id could lead the planner to walk the whole table in id order).
    step_ids = list(conn.execute(steps.limit(limits.step_runs)).scalars())
    changed = 0  # counted from what the statements changed, never from what was selected
    if step_ids and kind == ROWS:
        changed = conn.execute(delete(step_runs).where(step_runs.c.id.in_(step_ids))).rowcount
    elif step_ids and kind == EXECUTION_DATA:
        changed = conn.execute(update(step_runs).where(step_runs.c.id.in_(step_ids))
                               .values(input=None, output=None, error=None)).rowcount
    elif step_ids:
        changed = conn.execute(update(step_runs).where(step_runs.c.id.in_(step_ids))
                               .values(logs=None)).rowcount
    done_executions = 0
    if len(step_ids) < limits.step_runs:  # none of theirs left: the executions' turn
        done_executions = _finish(conn, vault, account_id, kind, ids)
    return Done(kind, done_executions, int(changed), picked[0].finished_at)


def _finish(conn: Connection, vault: Vault, account_id: str, kind: str,
            ids: list[str]) -> int:
    if kind == ROWS:
        return int(conn.execute(delete(executions).where(executions.c.id.in_(ids))).rowcount)
    if kind == STEP_LOGS:
        return int(conn.execute(
            update(executions).where(executions.c.id.in_(ids))
            .values(purged=executions.c.purged.op("|")(LOGS_PURGED))).rowcount)
    changed = 0
    for execution_id in ids:
        # trigger_payload is NOT NULL: it keeps the sealed JSON null, bound to its row like
        # any sealed value (so a moved ciphertext still does not open).
        try:
            empty = seal(vault, account_id, "executions", execution_id, "trigger_payload", None)
        except DataDestroyed:  # a shredded account's leftovers: unreadable already; delete
            conn.execute(delete(step_runs).where(step_runs.c.execution_id == execution_id))
            conn.execute(delete(executions).where(executions.c.id == execution_id))
            continue
        changed += conn.execute(
            update(executions).where(executions.c.id == execution_id).values(
                trigger_payload=empty, response=None, result=None, error=None,
                purged=executions.c.purged.op("|")(DATA_PURGED))).rowcount
    return changed


@dataclass(frozen=True)
class Backlog:
    """What a purge would remove now: per account and kind."""

    account_id: str
    kind: str
    executions: int
    step_runs: int
    oldest: datetime | None


def count_backlog(conn: Connection, *, account_id: str, kind: str, before: datetime,
                  since: datetime | None) -> Backlog | None:
    """The executions (and their step runs) a purge would handle as `kind`; `since` keeps
    out those that an earlier kind of the same run deletes outright."""
    due = or_(*(_due(account_id, v, before, since) for v in PENDING[kind]))
    n, oldest = conn.execute(select(func.count(), func.min(executions.c.finished_at))
                             .where(due)).one()
    if not n:
        return None
    steps = select(func.count()).select_from(step_runs).where(
        step_runs.c.execution_id.in_(select(executions.c.id).where(due)))
    pending = _step_pending(kind)
    if pending is not None:
        steps = steps.where(pending)
    return Backlog(account_id, kind, int(n), int(conn.execute(steps).scalar() or 0), oldest)
