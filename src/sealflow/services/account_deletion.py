"""Deleting an account (D4, S7): its keys are shredded first, then its rows go, then a
deletion record says what went and when.

The order is the safety:
1. Shred the account's keys (Vault.shred: the keyset is deleted, a tombstone recorded in the
   key store and in its tombstone log). From then on nothing of the account decrypts
   anywhere: whatever the next step has not removed yet, and whatever a restored data backup
   brings back, is ciphertext that answers 410 data_destroyed.
2. Delete its rows from every table of the cell, children first, in small batches, each its
   own short write transaction, so a large account never holds SQLite's write lock for long.
3. Mark the `account_deletions` record complete: account id, time, rows removed per table.
   Nothing personal (not the account's name).

Resumable and idempotent: the record is written right after the shred and its counts grow in
the same transaction as each batch, so running the deletion again after a crash finishes the
job (the shred is already done; it goes on with the rows), the counts stay exact, and there is
one record per account. Executions of the account that are queued or running end on their
own: their next seal or open raises DataDestroyed (the runner ends them failed), and once
their row is gone the runner's lease-guarded writes find nothing (LeaseLost).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Table, delete, insert, select, update

from sealflow.audit.records import OPERATOR, Action, Actor
from sealflow.clock import Clock
from sealflow.core.errors import NotFound
from sealflow.db.tables import (
    account_deletions,
    accounts,
    api_tokens,
    authentications,
    executions,
    invitations,
    oauth_states,
    recovery_codes,
    schedule_state,
    sessions,
    sso_identities,
    sso_providers,
    sso_states,
    step_runs,
    storage_entries,
    storage_items,
    storage_lookup_keys,
    users,
    workflow_versions,
    workflows,
)
from sealflow.db.tables_monitoring import audit_sinks
from sealflow.db.tables_staff import platform_staff, staff_grant_reads, staff_grants
from sealflow.db.tables_subject_requests import subject_requests
from sealflow.regions.cells import Cell, Cells

BATCH_SIZE = 500

# (table, the key a batch selects by): children before the rows they reference. step_runs
# and executions go together (_delete_executions); accounts last, with the record's end.
# Schedules first: the ticker stops trying to fire workflows it can no longer read.
_PLAIN: tuple[tuple[Table, Column[Any]], ...] = (
    (schedule_state, schedule_state.c.workflow_id),
    (audit_sinks, audit_sinks.c.id),  # SIEM streaming (siem/): its sealed key goes too
    # Staff access (I7): grants on this account and the reads under them (the audit trail
    # keeps its own records); a staff row of one of its members.
    (staff_grant_reads, staff_grant_reads.c.id),
    (staff_grants, staff_grants.c.id),
    (platform_staff, platform_staff.c.user_id),
    # Data subject requests about its members (D5): the account's deletion supersedes them.
    (subject_requests, subject_requests.c.id),
    # Data storage (D1): elements before the entries they belong to.
    (storage_items, storage_items.c.id),
    (storage_entries, storage_entries.c.id),
    (storage_lookup_keys, storage_lookup_keys.c.account_id),
    (authentications, authentications.c.id),
    (oauth_states, oauth_states.c.state_hash),
    (sso_states, sso_states.c.state_hash),
    (sso_providers, sso_providers.c.account_id),
    # Members last of these: their sessions, recovery codes and SSO identities reference them.
    (sso_identities, sso_identities.c.user_id),
    (sessions, sessions.c.id_hash),
    (recovery_codes, recovery_codes.c.code_hash),
    (invitations, invitations.c.id),
    (users, users.c.id),
)
_AFTER_EXECUTIONS: tuple[tuple[Table, Column[Any]], ...] = (
    (workflow_versions, workflow_versions.c.id),
    (workflows, workflows.c.id),
    (api_tokens, api_tokens.c.id),
)
# Every table of the cell that holds account rows, in deletion order (the record's keys).
TABLES: tuple[str, ...] = (
    *(t.name for t, _ in _PLAIN),
    step_runs.name,
    executions.name,
    *(t.name for t, _ in _AFTER_EXECUTIONS),
    accounts.name,
)

# Called with (region, workflow ids) once the keys are gone: drops in-memory copies of the
# account's data (services.workflows.DefinitionCache.forget_account).
Forget = Callable[[str, list[str]], object]


@dataclass(frozen=True)
class DeletionRecord:
    account_id: str
    region: str
    deleted_at: datetime
    removed: dict[str, int]  # rows removed per table
    complete: bool = True


def delete_account(
    cells: Cells,
    clock: Clock,
    *,
    region: str,
    account_id: str,
    forget: Forget | None = None,
    batch_size: int = BATCH_SIZE,
    actor: Actor = OPERATOR,
) -> DeletionRecord:
    """Deletes the account (shred, rows, record) and returns its deletion record. Running it
    again finishes an interrupted deletion, or returns the record of a finished one. NotFound
    when the cell has neither the account nor a deletion record of it (nothing is shredded)."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    cell = cells[region]
    with cell.read() as conn:
        known = conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first()
        if known is None and _load(conn, account_id) is None:
            raise NotFound(f"account {account_id} not found in region {region}")
        workflow_ids = list(
            conn.execute(select(workflows.c.id).where(workflows.c.account_id == account_id))
            .scalars()
        )

    now = clock.now()
    with cell.write() as conn:  # the record and its audit entry before anything goes (A2)
        if _load(conn, account_id) is None:
            conn.execute(
                insert(account_deletions).values(
                    account_id=account_id, deleted_at=now, removed=_dumps(False, {})
                )
            )
            cell.audit.record(conn, account_id=account_id, actor=actor,
                              action=Action.KEY_DESTROYED, target=f"account:{account_id}",
                              at=now, details={"reason": "account deletion"})

    cell.vault.shred(account_id)  # 1. first: from here on nothing of it decrypts
    if forget is not None:
        forget(region, workflow_ids)
    removed_now = 0
    for counts in _delete_rows(cell, account_id, batch_size):
        removed_now += sum(counts.values())

    with cell.write() as conn:  # 3. the account row and the end of the record, together
        gone = conn.execute(delete(accounts).where(accounts.c.id == account_id)).rowcount
        removed_now += gone
        record = _load(conn, account_id)
        assert record is not None  # written above, in this cell
        values: dict[str, Any] = {
            "removed": _dumps(True, _add(record.removed, {accounts.name: gone}))
        }
        if removed_now or not record.complete:
            values["deleted_at"] = clock.now()
        conn.execute(
            update(account_deletions)
            .where(account_deletions.c.account_id == account_id)
            .values(**values)
        )
        final = _load(conn, account_id)
        assert final is not None
        if not record.complete:
            cell.audit.record(conn, account_id=account_id, actor=actor,
                              action=Action.ACCOUNT_DELETED, target=f"account:{account_id}",
                              at=clock.now(), details={"removed": final.removed})
    assert final is not None
    return DeletionRecord(account_id, region, final.deleted_at, final.removed, final.complete)


def find_deletion(cells: Cells, region: str, account_id: str) -> DeletionRecord | None:
    """The deletion record of an account (complete or still going), or None."""
    with cells[region].read() as conn:
        state = _load(conn, account_id)
    if state is None:
        return None
    return DeletionRecord(account_id, region, state.deleted_at, state.removed, state.complete)


def locate(cells: Cells, account_id: str) -> str:
    """The region of an account, or of its deletion record (operator commands)."""
    for region in cells:
        with cells[region].read() as conn:
            if conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first():
                return region
            if _load(conn, account_id) is not None:
                return region
    raise NotFound(f"account {account_id} not found in any served region")


# -- the rows ---------------------------------------------------------------------------------
def _delete_rows(cell: Cell, account_id: str, batch_size: int) -> Iterator[dict[str, int]]:
    """2. Every row of the account, one short transaction per batch; yields each batch's
    counts (already added to the record, in the batch's own transaction)."""
    for table, key in _PLAIN:
        yield from _delete_plain(cell, account_id, table, key, batch_size)
    yield from _delete_executions(cell, account_id, batch_size)
    for table, key in _AFTER_EXECUTIONS:
        yield from _delete_plain(cell, account_id, table, key, batch_size)


def _delete_plain(
    cell: Cell, account_id: str, table: Table, key: Column[Any], batch_size: int
) -> Iterator[dict[str, int]]:
    batch = select(key).where(table.c.account_id == account_id).limit(batch_size)
    while True:
        with cell.write() as conn:
            n = conn.execute(delete(table).where(key.in_(batch.scalar_subquery()))).rowcount
            if n:
                _count(conn, account_id, {table.name: n})
        if n:
            yield {table.name: n}
        if n < batch_size:
            return


def _delete_executions(cell: Cell, account_id: str, batch_size: int) -> Iterator[dict[str, int]]:
    """A batch of executions goes in the transaction that removes their last step runs, so a
    step run is never left without its execution (and a worker still running one of them
    finds no row to write to). Each transaction removes at most batch_size step runs."""
    while True:
        with cell.write() as conn:
            ids = list(
                conn.execute(
                    select(executions.c.id)
                    .where(executions.c.account_id == account_id)
                    .limit(batch_size)
                ).scalars()
            )
            if not ids:
                return
            steps = select(step_runs.c.id).where(step_runs.c.execution_id.in_(ids))
            counts = {
                step_runs.name: conn.execute(
                    delete(step_runs).where(
                        step_runs.c.id.in_(steps.limit(batch_size).scalar_subquery())
                    )
                ).rowcount
            }
            if counts[step_runs.name] < batch_size:  # these executions have no steps left
                counts[executions.name] = conn.execute(
                    delete(executions).where(executions.c.id.in_(ids))
                ).rowcount
            _count(conn, account_id, counts)
        yield counts


# -- the record -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _State:
    deleted_at: datetime
    removed: dict[str, int]
    complete: bool


def _dumps(complete: bool, removed: dict[str, int]) -> str:
    return json.dumps({"complete": complete, "tables": {t: removed.get(t, 0) for t in TABLES}})


def _add(base: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    return {t: base.get(t, 0) + more.get(t, 0) for t in TABLES}


def _load(conn: Connection, account_id: str, *, lock: bool = False) -> _State | None:
    query = select(account_deletions).where(account_deletions.c.account_id == account_id)
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        return None
    data = json.loads(row.removed)
    return _State(row.deleted_at, {t: int(data["tables"].get(t, 0)) for t in TABLES},
                  bool(data["complete"]))


def _count(conn: Connection, account_id: str, counts: dict[str, int]) -> None:
    """Adds a batch's counts to the record, in the batch's transaction (under SQLite's write
    lock, or the row's lock on PostgreSQL: two runs at once still add up)."""
    state = _load(conn, account_id, lock=True)
    assert state is not None  # written before the first batch
    conn.execute(
        update(account_deletions)
        .where(account_deletions.c.account_id == account_id)
        .values(removed=_dumps(False, _add(state.removed, counts)))
    )
