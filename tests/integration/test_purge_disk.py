"""The purge gives disk space back (D3): after 90% of 50,000 executions (and their step runs)
are purged, the SQLite file is at least 70% smaller. Rows are bulk-inserted straight into the
file (the purge does not open deleted rows, so random sealed-looking text does), and the
file is a real cell database, migrated, with incremental auto-vacuum."""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sealflow.bootstrap import build_cells, migrate_all
from sealflow.config import RegionSettings, Settings
from sealflow.regions.cells import Cells
from sealflow.services.accounts import create_account
from sealflow.services.purge import purge_cell, sqlite_auto_vacuum
from tests.support.clock import ManualClock

TOTAL = 50_000
EXPIRED = 45_000
STEPS = 2


def sealed_text(n: int) -> str:
    return base64.urlsafe_b64encode(os.urandom(n)).decode()


def bulk_insert(db: Path, account_id: str, clock: ManualClock) -> None:
    old = (clock.now() - timedelta(days=31)).replace(tzinfo=None)
    new = (clock.now() - timedelta(days=1)).replace(tzinfo=None)
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    with sqlite3.connect(db) as conn:
        execs, steps = [], []
        for i in range(TOTAL):
            eid = str(uuid.uuid4())
            at = (old if i < EXPIRED else new).strftime(fmt)
            execs.append((eid, account_id, "wf", 1, "succeeded", "webhook", sealed_text(300),
                          sealed_text(120), 0, 0, 0, 0, 0, at, at, at, at))
            for s in range(STEPS):
                steps.append((eid, account_id, s, f"s{s}", f"s{s}", "transform", "run",
                              "succeeded", sealed_text(150), sealed_text(150),
                              sealed_text(60), 1, at))
        conn.executemany(
            "INSERT INTO executions (id, account_id, workflow_id, workflow_version, status,"
            " trigger_type, trigger_payload, result, call_depth, respond_wait,"
            " platform_attempts, steps_run, cancel_requested, run_after, created_at,"
            " started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", execs)
        conn.executemany(
            "INSERT INTO step_runs (execution_id, account_id, seq, path, step_name, connector,"
            " operation, status, input, output, logs, attempts, started_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", steps)


def size(db: Path) -> int:
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


@pytest.fixture
def cells(tmp_path: Path) -> Iterator[Cells]:
    c = build_cells(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                    ManualClock())
    migrate_all(c)
    yield c
    c.dispose()


def test_purging_nine_tenths_shrinks_the_file_by_more_than_seven_tenths(
        cells: Cells, tmp_path: Path) -> None:
    clock = ManualClock()
    cell = cells["us"]
    assert sqlite_auto_vacuum(cell) == "incremental"  # set when the file was made
    account, _ = create_account(cells, clock, name="Disk", region="us")
    db = tmp_path / "data" / "us.db"
    bulk_insert(db, account.id, clock)
    with sqlite3.connect(db) as conn:  # everything in the main file before measuring
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    before = size(db)

    result = purge_cell(cell, clock, checkpoint="truncate")

    after = size(db)
    assert result.complete
    assert (result.counts.executions_deleted, result.counts.step_runs_deleted) == (
        EXPIRED, EXPIRED * STEPS)
    assert result.counts.pages_freed > 0
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM executions").fetchone()[0] == TOTAL - EXPIRED
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] == 0
    assert after <= 0.30 * before, f"{before} -> {after} bytes"
