"""Retention and purge (D3): the record of every purge run.
Kept apart from db/tables.py for size; imported at its end so `metadata` is whole.

Retention policies themselves are account settings (accounts.settings["retention"],
services/retention.py); the purge's progress marker is executions.purged (db/tables.py).

One row per run of the purge in this cell, with what it removed. The counts are updated in
the same transaction as each batch they count, so an interrupted run (a crash, a stopped
server: finished_at stays NULL) still says truly what went. No `account_id` column: a run
spans accounts (per-account counts are in the audit records of each batch, Action.PURGE),
and account deletion sweeps every table with an `account_id` (this record must outlive it).
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, String, Table

from sealflow.db.tables import DateTime, metadata

purge_runs = Table(
    "purge_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trigger", String(16), nullable=False),  # housekeeping | cli
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),  # NULL: running, or interrupted
    # True: nothing expired was left when it finished; False: it stopped at its budget.
    Column("complete", Boolean, nullable=False, default=False),
    Column("batches", Integer, nullable=False, default=0),
    # Executions whose raw data (trigger payload, response, result, error, and their step
    # runs' input, output and error) was cleared, the row kept for its step logs.
    Column("execution_data_cleared", Integer, nullable=False, default=0),
    # Step runs whose debug logs were cleared (logs lifetime shorter than the data's).
    Column("step_logs_cleared", Integer, nullable=False, default=0),
    # Rows deleted once both lifetimes were over.
    Column("executions_deleted", Integer, nullable=False, default=0),
    Column("step_runs_deleted", Integer, nullable=False, default=0),
    # Server log files (<data_dir>/logs/sealflow-YYYY-MM-DD.jsonl) deleted by this run.
    Column("log_files_deleted", Integer, nullable=False, default=0),
    # SQLite pages given back to the file system by incremental vacuum.
    Column("pages_freed", Integer, nullable=False, default=0),
)
