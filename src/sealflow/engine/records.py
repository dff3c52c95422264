"""What the runner reads and writes in the cell: the execution it holds, its completed steps
(for resume), each step's record, the final state. Every write is guarded by the lease, so
a worker that lost an execution cannot write over the one that took it over.

Customer columns are sealed (db.sealed, S6): one vault call per column, inside the caller's
transaction (no extra one). Step records bind (execution_id, path), see db.sealed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from sealflow.core.executions import Status
from sealflow.db.sealed import seal, step_row_id
from sealflow.db.tables import executions, step_runs
from sealflow.vault.vault import Vault


class LeaseLost(Exception):
    """Another worker holds this execution now (ours expired): stop without writing."""


@dataclass
class StepRecord:
    path: str
    name: str
    connector: str
    operation: str
    status: str
    input: Any
    output: Any
    error: dict[str, Any] | None
    logs: list[dict[str, Any]]
    attempts: int
    duration_ms: float
    started_at: datetime
    finished_at: datetime
    next_step: str | None


# The hot-path statements are built once and executed with parameters: building a Core
# statement and computing its cache key costs more than SQLite's execution of it. A reused
# statement object keeps its memoised cache key, so only the parameters change per call.
@cache
def _load_execution() -> Any:
    return select(executions).where(executions.c.id == bindparam("execution_id"))


@cache
def _completed_steps() -> Any:
    return select(
        step_runs.c.path,
        step_runs.c.status,
        step_runs.c.output,
        step_runs.c.error,
        step_runs.c.next_step,
        step_runs.c.seq,
    ).where(step_runs.c.execution_id == bindparam("execution_id"))


def _guarded() -> Any:
    return (executions.c.id == bindparam("g_id")) & (
        executions.c.lease_owner == bindparam("g_owner")
    )


@cache
def _step_lease() -> Any:
    return (
        update(executions)
        .where(_guarded())
        .values(steps_run=executions.c.steps_run + 1, lease_expires_at=bindparam("lease_until"))
    )


@cache
def _step_lease_response() -> Any:
    return (
        update(executions)
        .where(_guarded())
        .values(
            steps_run=executions.c.steps_run + 1,
            lease_expires_at=bindparam("lease_until"),
            response=bindparam("response"),
        )
    )


@cache
def _finish_step() -> Any:
    return update(executions).where(_guarded()).values(steps_run=executions.c.steps_run + 1)


@cache
def _insert_step() -> Any:
    return insert(step_runs)


@cache
def _set_response() -> Any:
    return update(executions).where(_guarded()).values(response=bindparam("response"))


@cache
def _finish() -> Any:
    return update(executions).where(_guarded())


def load_execution(conn: Connection, execution_id: str) -> Any:
    return conn.execute(_load_execution(), {"execution_id": execution_id}).first()


def completed_steps(conn: Connection, execution_id: str) -> dict[str, Any]:
    rows = conn.execute(_completed_steps(), {"execution_id": execution_id}).all()
    return {r.path: r for r in rows}


def _guard(execution_id: str, owner: str) -> Any:
    return (executions.c.id == execution_id) & (executions.c.lease_owner == owner)


def record_step(
    conn: Connection,
    vault: Vault,
    *,
    execution_id: str,
    account_id: str,
    owner: str,
    seq: int,
    record: StepRecord,
    lease_until: datetime,
    response: Any = None,
) -> None:
    """Write a finished step and extend the lease in one transaction: the step's completion
    is durable before the next step starts (resume never re-runs it). `response`: the
    webhook answer the step gave, stored with it."""
    params = {"g_id": execution_id, "g_owner": owner, "lease_until": lease_until}
    if response is not None:
        params["response"] = seal(vault, account_id, "executions", execution_id, "response",
                                  response)
    held = conn.execute(
        _step_lease() if response is None else _step_lease_response(), params
    ).rowcount
    if held != 1:
        raise LeaseLost(execution_id)
    insert_step(
        conn, vault, execution_id=execution_id, account_id=account_id, seq=seq, record=record
    )


def step_lease(
    conn: Connection, execution_id: str, owner: str, now: datetime, lease_s: float
) -> None:
    if (
        conn.execute(
            _step_lease(),
            {"g_id": execution_id, "g_owner": owner, "lease_until": lease_deadline(now, lease_s)},
        ).rowcount
        != 1
    ):
        raise LeaseLost(execution_id)


def insert_step(
    conn: Connection,
    vault: Vault,
    *,
    execution_id: str,
    account_id: str,
    seq: int,
    record: StepRecord,
) -> None:
    row_id = step_row_id(execution_id, record.path)

    def sealed(column: str, value: Any) -> str:
        return seal(vault, account_id, "step_runs", row_id, column, value)

    conn.execute(
        _insert_step(),
        {
            "execution_id": execution_id,
            "account_id": account_id,
            "seq": seq,
            "path": record.path,
            "step_name": record.name,
            "connector": record.connector,
            "operation": record.operation,
            "status": record.status,
            "input": sealed("input", record.input),
            "output": sealed("output", record.output),
            "error": sealed("error", record.error) if record.error else None,
            "logs": sealed("logs", record.logs) if record.logs else None,
            "attempts": record.attempts,
            "next_step": record.next_step,
            "duration_ms": record.duration_ms,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
        },
    )


def set_response(
    conn: Connection, vault: Vault, account_id: str, execution_id: str, owner: str, response: Any
) -> None:
    sealed = seal(vault, account_id, "executions", execution_id, "response", response)
    if (
        conn.execute(
            _set_response(), {"g_id": execution_id, "g_owner": owner, "response": sealed}
        ).rowcount
        != 1
    ):
        raise LeaseLost(execution_id)


def finish(
    conn: Connection,
    vault: Vault,
    *,
    account_id: str,
    execution_id: str,
    owner: str,
    status: Status,
    now: datetime,
    result: Any = None,
    error: dict[str, Any] | None = None,
    response: Any = None,
    step_done: bool = False,
) -> None:
    def sealed(column: str, value: Any) -> str:
        return seal(vault, account_id, "executions", execution_id, column, value)

    values: dict[str, Any] = {
        "status": status,
        "finished_at": now,
        "lease_owner": None,
        "lease_expires_at": None,
        "result": sealed("result", result) if result is not None else None,
        "error": sealed("error", error) if error else None,
    }
    if response is not None:
        values["response"] = sealed("response", response)
    values.update(g_id=execution_id, g_owner=owner)
    if conn.execute(_finish_step() if step_done else _finish(), values).rowcount != 1:
        raise LeaseLost(execution_id)


def hand_back(
    conn: Connection,
    *,
    execution_id: str,
    owner: str,
    run_after: datetime,
    platform_attempt: bool,
) -> bool:
    """Return a running execution to the queue (platform fault or shutdown); its completed
    steps stay recorded and are not run again."""
    values: dict[str, Any] = {
        "status": Status.QUEUED,
        "lease_owner": None,
        "lease_expires_at": None,
        "run_after": run_after,
    }
    if platform_attempt:
        values["platform_attempts"] = executions.c.platform_attempts + 1
    return bool(
        conn.execute(
            update(executions).where(_guard(execution_id, owner)).values(**values)
        ).rowcount
    )


def heartbeat(
    conn: Connection, execution_id: str, owner: str, lease_until: datetime
) -> tuple[bool, bool]:
    """Extend the lease. Returns (still held, cancel requested)."""
    held = (
        conn.execute(
            update(executions)
            .where(_guard(execution_id, owner))
            .values(lease_expires_at=lease_until)
        ).rowcount
        == 1
    )
    if not held:
        return False, False
    flag = conn.execute(
        select(executions.c.cancel_requested).where(executions.c.id == execution_id)
    ).scalar_one()
    return True, bool(flag)


def lease_deadline(now: datetime, lease_s: float) -> datetime:
    return now + timedelta(seconds=lease_s)
