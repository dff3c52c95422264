"""Executions as the API and CLI see them: start one, list them, read one with its steps (the
Debug view, W7), cancel, replay."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, insert, select, update

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.core.executions import TERMINAL, Status
from sealflow.db.sealed import open_, seal, step_row_id
from sealflow.db.tables import executions, step_runs, workflows
from sealflow.redaction.redactor import Redactor
from sealflow.regions.cells import Cells
from sealflow.services.account_settings import policy_for
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller
from sealflow.services.purge_batches import DATA_PURGED
from sealflow.vault.vault import Vault

TRIGGER_TYPES = ("manual", "webhook", "schedule", "callable", "replay")


@dataclass(frozen=True)
class NewExecution:
    id: str
    region: str
    account_id: str
    workflow_id: str
    version: int
    row: Any = field(default=None, compare=False, repr=False)  # the inserted values


@cache
def _insert_execution() -> Any:
    return insert(executions)  # built once: see engine.records


def insert_execution(
    conn: Connection,
    clock: Clock,
    vault: Vault,
    *,
    region: str,
    account_id: str,
    workflow_id: str,
    version: int,
    trigger_type: str,
    payload: Any,
    respond_wait: bool = False,
    parent_id: str | None = None,
    call_depth: int = 0,
    lease_owner: str | None = None,
    lease_expires_at: datetime | None = None,
) -> NewExecution:
    """Insert a queued execution in the caller's transaction. With `lease_owner`, it is
    inserted already claimed (running) by that worker: the direct-dispatch fast path."""
    now = clock.now()
    execution_id = str(uuid.uuid4())
    values = dict(
        id=execution_id,
        account_id=account_id,
        workflow_id=workflow_id,
        workflow_version=version,
        status=Status.RUNNING if lease_owner else Status.QUEUED,
        trigger_type=trigger_type,
        trigger_payload=seal(vault, account_id, "executions", execution_id, "trigger_payload",
                             payload),
        parent_id=parent_id,
        call_depth=call_depth,
        respond_wait=respond_wait,
        platform_attempts=0,
        steps_run=0,
        lease_owner=lease_owner,
        lease_expires_at=lease_expires_at,
        run_after=now,
        cancel_requested=False,
        created_at=now,
        started_at=now if lease_owner else None,
    )
    conn.execute(_insert_execution(), values)
    # `trigger`: the payload in clear, so the runner of this fresh row needs no decryption.
    row = SimpleNamespace(
        **values, response=None, result=None, error=None, finished_at=None, trigger=payload
    )
    return NewExecution(execution_id, region, account_id, workflow_id, version, row)


def workflow_for_run(conn: Connection, account_id: str, workflow_id: str) -> Any:
    row = conn.execute(
        select(
            workflows.c.id,
            workflows.c.current_version,
            workflows.c.trigger_type,
            workflows.c.enabled,
        ).where(
            workflows.c.id == workflow_id,
            workflows.c.account_id == account_id,
            workflows.c.deleted_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(f"workflow {workflow_id} not found")
    return row


def start(
    cells: Cells,
    clock: Clock,
    caller: Caller,
    workflow_id: str,
    payload: Any,
    *,
    trigger_type: str = "manual",
) -> NewExecution:
    """Queue a run of the workflow's current version (manual runs: API and CLI)."""
    with cells[caller.region].write() as conn:
        wf = workflow_for_run(conn, caller.account_id, workflow_id)
        return insert_execution(
            conn,
            clock,
            cells[caller.region].vault,
            region=caller.region,
            account_id=caller.account_id,
            workflow_id=workflow_id,
            version=wf.current_version,
            trigger_type=trigger_type,
            payload={"body": payload, "headers": {}, "query": {}},
        )


def _summary(vault: Vault, row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "workflow_id": row.workflow_id,
        "workflow_version": row.workflow_version,
        "status": row.status,
        "trigger_type": row.trigger_type,
        "parent_id": row.parent_id,
        "created_at": row.created_at,
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "error": open_(vault, row.account_id, "executions", row.id, "error", row.error),
    }


def list_executions(
    cells: Cells,
    caller: Caller,
    *,
    workflow_id: str | None,
    status: str | None,
    limit: int,
    before: datetime | None,
) -> list[dict[str, Any]]:
    if status is not None and status not in {s.value for s in Status}:
        raise InvalidInput(
            "invalid filter", [Issue("$.status", f"must be one of {', '.join(Status)}")]
        )
    query = select(executions).where(executions.c.account_id == caller.account_id)
    if workflow_id:
        query = query.where(executions.c.workflow_id == workflow_id)
    if status:
        query = query.where(executions.c.status == status)
    if before:
        query = query.where(executions.c.created_at < before)
    query = query.order_by(executions.c.created_at.desc(), executions.c.id).limit(limit)
    cell = cells[caller.region]
    with cell.read() as conn:
        rows = conn.execute(query).all()
    return [_summary(cell.vault, r) for r in rows]


def _load(conn: Connection, caller: Caller, execution_id: str) -> Any:
    row = conn.execute(
        select(executions).where(
            executions.c.id == execution_id, executions.c.account_id == caller.account_id
        )
    ).first()
    if row is None:
        raise NotFound(f"execution {execution_id} not found")
    return row


def detail(cells: Cells, clock: Clock, caller: Caller, execution_id: str) -> dict[str, Any]:
    """The Debug view: the execution and, per step, input, output, status, attempts,
    duration and log lines. The read is on the audit trail before the data is returned."""
    cell = cells[caller.region]
    with cell.read() as conn:
        row = _load(conn, caller, execution_id)
        steps = conn.execute(
            select(step_runs)
            .where(
                step_runs.c.execution_id == execution_id,
                step_runs.c.account_id == caller.account_id,
            )
            .order_by(step_runs.c.seq)
        ).all()
    vault, account = cell.vault, caller.account_id

    def opened(column: str) -> Any:
        return open_(vault, account, "executions", execution_id, column, getattr(row, column))

    def step_value(s: Any, column: str) -> Any:
        row_id = step_row_id(execution_id, s.path)
        return open_(vault, account, "step_runs", row_id, column, getattr(s, column))

    out = _summary(vault, row)
    # The trigger is stored as received (a replay needs it whole); shown, it is redacted by
    # the account's rules (S5). Step records and results were redacted when recorded.
    shown = Redactor(policy_for(cell, account))
    out.update(
        trigger=shown.value(opened("trigger_payload")),
        result=opened("result"),
        response=opened("response"),
        platform_attempts=row.platform_attempts,
        steps=[
            {
                "path": s.path,
                "name": s.step_name,
                "connector": s.connector,
                "operation": s.operation,
                "status": s.status,
                "attempts": s.attempts,
                "duration_ms": s.duration_ms,
                "started_at": s.started_at,
                "finished_at": s.finished_at,
                "input": step_value(s, "input"),
                "output": step_value(s, "output"),
                "error": step_value(s, "error"),
                "logs": step_value(s, "logs") or [],
                "next": s.next_step,
            }
            for s in steps
        ],
    )
    with cell.write() as conn:
        by_caller(cell, conn, caller, Action.EXECUTION_DATA_READ, f"execution:{execution_id}",
                  clock.now(), steps=len(steps))
    return out


def status_of(cells: Cells, caller: Caller, execution_id: str) -> str:
    with cells[caller.region].read() as conn:
        return str(_load(conn, caller, execution_id).status)


def cancel(cells: Cells, clock: Clock, caller: Caller, execution_id: str) -> str:
    """Queued executions are cancelled at once; running ones at their next step boundary
    (the worker's heartbeat sees the flag)."""
    cell = cells[caller.region]
    with cell.write() as conn:
        row = _load(conn, caller, execution_id)
        if row.status in TERMINAL:
            raise Conflict(f"execution {execution_id} already {row.status}")
        if row.status == Status.QUEUED:
            conn.execute(
                update(executions)
                .where(executions.c.id == execution_id, executions.c.status == Status.QUEUED)
                .values(
                    status=Status.CANCELLED,
                    finished_at=clock.now(),
                    error=seal(
                        cell.vault, caller.account_id, "executions", execution_id, "error",
                        {"code": "cancelled", "message": "cancelled by user"},
                    ),
                )
            )
            return str(Status.CANCELLED)
        conn.execute(
            update(executions).where(executions.c.id == execution_id).values(cancel_requested=True)
        )
        return "cancelling"


def replay(cells: Cells, clock: Clock, caller: Caller, execution_id: str) -> NewExecution:
    """Run a finished execution's trigger payload again on the workflow's current version
    (W7: fire-and-forget executions can be replayed)."""
    cell = cells[caller.region]
    with cell.write() as conn:
        row = _load(conn, caller, execution_id)
        if row.status not in TERMINAL:
            raise Conflict(f"execution {execution_id} is still {row.status}; replay a finished one")
        if (row.purged or 0) & DATA_PURGED:
            raise Conflict(f"execution {execution_id} cannot be replayed: its trigger payload "
                           "was deleted by the account's retention policy (D3)")
        wf = workflow_for_run(conn, caller.account_id, row.workflow_id)
        payload = open_(cell.vault, caller.account_id, "executions", row.id, "trigger_payload",
                        row.trigger_payload)
        return insert_execution(
            conn,
            clock,
            cell.vault,
            region=caller.region,
            account_id=caller.account_id,
            workflow_id=row.workflow_id,
            version=wf.current_version,
            trigger_type="replay",
            payload=payload,
            parent_id=row.id,
        )
