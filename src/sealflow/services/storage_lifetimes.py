"""Lifetimes of stored data (D2): an execution's scope goes when the execution ends (in the
same transaction, plus a once-a-minute sweep as a backstop), a workflow's when the workflow
is deleted; an account's goes with the account (services/account_deletion)."""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select

from sealflow.core.executions import Status
from sealflow.db.tables import executions, storage_entries, storage_items
from sealflow.regions.cells import Cell
from sealflow.services.storage import Scope


def _in_scope() -> Any:
    return (
        (storage_entries.c.scope == bindparam("scope"))
        & (storage_entries.c.scope_id == bindparam("scope_id"))
        & (storage_entries.c.account_id == bindparam("account_id"))
    )


# Built once (see engine.records): the runner calls delete_scope at the end of every execution.
@cache
def _any_in_scope() -> Any:
    return select(storage_entries.c.id).where(_in_scope()).limit(1)


@cache
def _delete_scope_items() -> Any:
    entries = select(storage_entries.c.id).where(_in_scope())
    return delete(storage_items).where(storage_items.c.entry_id.in_(entries.scalar_subquery()))


@cache
def _delete_scope_entries() -> Any:
    return delete(storage_entries).where(_in_scope())


def delete_scope(conn: Connection, account_id: str, scope: Scope, scope_id: str) -> int:
    """Removes every key of one execution's or workflow's scope, in the caller's transaction
    (the end of the execution, the deletion of the workflow). Returns the keys removed. Most
    executions store nothing: one indexed look-up is all they pay."""
    params = {"scope": scope, "scope_id": scope_id, "account_id": account_id}
    if conn.execute(_any_in_scope(), params).first() is None:
        return 0
    conn.execute(_delete_scope_items(), params)
    return int(conn.execute(_delete_scope_entries(), params).rowcount)


def sweep_ended_executions(cell: Cell, *, batch_size: int = 500) -> int:
    """A backstop for D2: removes execution-scope keys whose execution has ended (or is gone)
    but kept them, one short write of at most `batch_size` keys. The runner already removes
    them when it ends an execution; this catches an end written by another path. Meant to run
    periodically (every minute or so). Returns the keys removed."""
    alive = select(executions.c.id).where(
        executions.c.id == storage_entries.c.scope_id,
        executions.c.status.in_((Status.QUEUED, Status.RUNNING)),
    )
    with cell.write() as conn:
        ids = list(conn.execute(
            select(storage_entries.c.id)
            .where(storage_entries.c.scope == "execution", ~alive.exists())
            .limit(batch_size)
        ).scalars())
        if ids:
            conn.execute(delete(storage_items).where(storage_items.c.entry_id.in_(ids)))
            conn.execute(delete(storage_entries).where(storage_entries.c.id.in_(ids)))
    return len(ids)
