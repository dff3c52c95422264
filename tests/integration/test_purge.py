"""The retention purge (D3, services/purge.py) on a real SQLite cell, the clock moved, never
slept: each lifetime at its boundary, shorter policies, the dry run, interruption and resume,
the run record and the audit records, fail-closed auditing, server log files."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import func, insert, select

from sealflow.audit.log import iter_records
from sealflow.audit.records import SYSTEM
from sealflow.bootstrap import build_cells, migrate_all
from sealflow.config import RegionSettings, Settings
from sealflow.core.errors import Conflict, InvalidInput
from sealflow.db.sealed import open_, seal, step_row_id
from sealflow.db.tables import executions, step_runs
from sealflow.db.tables_retention import purge_runs
from sealflow.logs import log_file_name
from sealflow.regions.cells import Cell, Cells
from sealflow.services import account_settings, retention
from sealflow.services.accounts import Caller, create_account
from sealflow.services.executions import detail, replay
from sealflow.services.purge import LogFiles, Purger, backlog, purge_cell
from sealflow.services.purge_batches import Limits
from tests.support.clock import ManualClock

PAYLOAD = {"order": "A-17", "card_holder": "canary-holder-4f1c"}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cells(tmp_path: Path, clock: ManualClock) -> Iterator[Cells]:
    c = build_cells(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                    clock)
    migrate_all(c)
    yield c
    c.dispose()


@pytest.fixture
def cell(cells: Cells) -> Cell:
    return cells["us"]


@pytest.fixture
def account(cells: Cells, clock: ManualClock) -> str:
    acc, _ = create_account(cells, clock, name="Retention", region="us")
    return acc.id


def add_executions(cell: Cell, account_id: str, finished_at: datetime, n: int = 1,
                   steps: int = 2) -> list[str]:
    """Finished executions with sealed raw data and step runs with logs, as the runner
    leaves them."""
    ids = []
    with cell.write() as conn:
        for i in range(n):
            eid = str(uuid.uuid4())
            ids.append(eid)

            def sealed(col: str, value: Any, table: str = "executions", row: str = eid) -> str:
                return seal(cell.vault, account_id, table, row, col, value)

            conn.execute(insert(executions).values(
                id=eid, account_id=account_id, workflow_id="wf", workflow_version=1,
                status="succeeded", trigger_type="webhook",
                trigger_payload=sealed("trigger_payload", PAYLOAD),
                response=sealed("response", {"ok": True}), result=sealed("result", {"n": i}),
                run_after=finished_at, created_at=finished_at - timedelta(seconds=1),
                started_at=finished_at - timedelta(seconds=1), finished_at=finished_at))
            for s in range(steps):
                path = f"step{s}"
                row = step_row_id(eid, path)
                conn.execute(insert(step_runs).values(
                    execution_id=eid, account_id=account_id, seq=s, path=path,
                    step_name=path, connector="transform", operation="run",
                    status="succeeded",
                    input=sealed("input", {"in": PAYLOAD}, "step_runs", row),
                    output=sealed("output", {"out": s}, "step_runs", row),
                    logs=sealed("logs", [f"log line {s}"], "step_runs", row),
                    attempts=1, started_at=finished_at, finished_at=finished_at))
    return ids


def state(cell: Cell, account_id: str, eid: str) -> dict[str, Any]:
    """What is left of one execution: its raw data opened, its step logs opened."""
    with cell.read() as conn:
        row = conn.execute(select(executions).where(executions.c.id == eid)).first()
        steps = conn.execute(select(step_runs).where(step_runs.c.execution_id == eid)
                             .order_by(step_runs.c.seq)).all()
    if row is None:
        assert steps == []  # never step runs without their execution
        return {"exists": False}
    v = cell.vault
    return {
        "exists": True,
        "trigger": open_(v, account_id, "executions", eid, "trigger_payload",
                         row.trigger_payload),
        "response": row.response, "result": row.result, "error": row.error,
        "step_data": [(s.input, s.output, s.error) for s in steps],
        "logs": [open_(v, account_id, "step_runs", step_row_id(eid, s.path), "logs", s.logs)
                 for s in steps],
        "purged": row.purged,
    }


def has_raw_data(st: dict[str, Any]) -> bool:
    return (st["trigger"] == PAYLOAD and st["result"] is not None
            and all(all(x is not None for x in d[:2]) for d in st["step_data"]))


def raw_data_gone(st: dict[str, Any]) -> bool:
    return (st["trigger"] is None and st["response"] is None and st["result"] is None
            and st["error"] is None and all(d == (None, None, None) for d in st["step_data"]))


def purge(cell: Cell, clock: ManualClock, **kw: Any) -> Any:
    return purge_cell(cell, clock, **kw)


def test_raw_data_stays_until_ten_days_then_goes(cells: Cells, cell: Cell,
                                                 clock: ManualClock, account: str) -> None:
    [eid] = add_executions(cell, account, clock.now())
    clock.move(days=9, hours=23)
    purge(cell, clock)
    assert has_raw_data(state(cell, account, eid))

    clock.move(hours=2)  # 10 days 1 hour after it finished
    result = purge(cell, clock)
    st = state(cell, account, eid)
    assert st["exists"] and raw_data_gone(st)
    assert st["logs"] == [["log line 0"], ["log line 1"]]  # debug logs: 30 days
    assert result.counts.execution_data_cleared == 1
    # The Debug view still opens it: steps and logs, no data.
    shown = detail(cells, clock, Caller("us", account, "t"), eid)
    assert shown["trigger"] is None and shown["result"] is None
    assert [s["logs"] for s in shown["steps"]] == [["log line 0"], ["log line 1"]]
    assert all(s["input"] is None and s["output"] is None for s in shown["steps"])
    with pytest.raises(Conflict, match="retention policy"):  # no payload left to run again
        replay(cells, clock, Caller("us", account, "t"), eid)
    # Nothing twice: a second run finds nothing.
    assert purge(cell, clock).run_id is None


def file_bytes(tmp_path: Path) -> bytes:
    db = tmp_path / "data" / "us.db"
    wal = db.with_name("us.db-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def stored(cell: Cell, eid: str) -> list[str]:
    """The sealed texts of an execution and its step runs, as stored."""
    with cell.read() as conn:
        row = conn.execute(select(executions).where(executions.c.id == eid)).one()
        steps = conn.execute(select(step_runs).where(step_runs.c.execution_id == eid)).all()
    return [row.trigger_payload, row.result, *(s.input for s in steps),
            *(s.output for s in steps)]


def test_no_copy_of_purged_data_stays_in_the_file(cell: Cell, clock: ManualClock,
                                                  account: str, tmp_path: Path) -> None:
    [cleared] = add_executions(cell, account, clock.now())
    [deleted] = add_executions(cell, account, clock.now() - timedelta(days=21))
    texts = stored(cell, cleared) + stored(cell, deleted)
    purge(cell, clock, checkpoint="truncate")  # nothing due yet: a checkpoint, no purge
    before = file_bytes(tmp_path)
    assert all(t.encode() in before for t in texts)
    clock.move(days=10, hours=1)
    result = purge(cell, clock, checkpoint="truncate")
    assert (result.counts.execution_data_cleared, result.counts.executions_deleted) == (1, 1)
    after = file_bytes(tmp_path)
    assert [t for t in texts if t.encode() in after] == []


def test_step_logs_and_rows_go_at_thirty_days(cell: Cell, clock: ManualClock,
                                              account: str) -> None:
    [eid] = add_executions(cell, account, clock.now())
    clock.move(days=29, hours=23)
    purge(cell, clock)
    st = state(cell, account, eid)
    assert st["exists"] and st["logs"] == [["log line 0"], ["log line 1"]]
    clock.move(hours=2)
    result = purge(cell, clock)
    assert state(cell, account, eid) == {"exists": False}
    assert (result.counts.executions_deleted, result.counts.step_runs_deleted) == (1, 2)


def test_a_24_hour_policy_is_honoured(cell: Cell, clock: ManualClock, account: str) -> None:
    retention.set_policy(cell, clock, account, actor=SYSTEM, executions=timedelta(hours=24),
                         logs=timedelta(hours=24))
    [eid] = add_executions(cell, account, clock.now())
    clock.move(hours=23)
    purge(cell, clock)
    assert has_raw_data(state(cell, account, eid))
    clock.move(hours=2)
    purge(cell, clock)
    assert state(cell, account, eid) == {"exists": False}


def test_logs_shorter_than_data(cell: Cell, clock: ManualClock, account: str) -> None:
    retention.set_policy(cell, clock, account, actor=SYSTEM, logs=timedelta(days=2))
    [eid] = add_executions(cell, account, clock.now())
    clock.move(days=2, hours=1)
    result = purge(cell, clock)
    st = state(cell, account, eid)
    assert has_raw_data(st) and st["logs"] == [None, None]
    assert result.counts.step_logs_cleared == 2
    clock.move(days=8)  # 10 days 1 hour
    purge(cell, clock)
    assert state(cell, account, eid) == {"exists": False}


def test_policies_outside_the_limits_are_refused(cells: Cells, clock: ManualClock,
                                                 account: str) -> None:
    cell = cells["us"]
    with pytest.raises(InvalidInput) as err:
        retention.set_policy(cell, clock, account, actor=SYSTEM,
                             executions=timedelta(hours=23))
    [issue] = err.value.issues
    assert issue.path == "$.retention.executions" and "at least 24h" in issue.message
    caller = Caller("us", account, "t")
    for body, path, words in (
        ({"logs": "12h"}, "$.retention.logs", "at least 24h"),
        ({"executions": "11d"}, "$.retention.executions", "at most 10d"),
        ({"logs": "31d"}, "$.retention.logs", "at most 30d"),
        ({"logs": "ten days"}, "$.retention.logs", "duration"),
        ({"keep": "1d"}, "$.retention.keep", "unknown field"),
    ):
        with pytest.raises(InvalidInput) as err:
            account_settings.change(cells, clock, caller, {"retention": body})
        assert [(i.path, words in i.message) for i in err.value.issues] == [(path, True)]
    assert retention.show(cell, account) == retention.RetentionPolicy()  # nothing changed
    shown = account_settings.change(cells, clock, caller,
                                    {"retention": {"executions": "36h"}})
    assert shown["retention"] == {"executions": "1d12h", "logs": "30d"}
    assert retention.show(cell, account).executions == timedelta(hours=36)


def test_dry_run_counts_and_deletes_nothing(cell: Cell, clock: ManualClock,
                                            account: str) -> None:
    start = clock.now()
    add_executions(cell, account, start, n=3)
    add_executions(cell, account, start + timedelta(days=25), n=2)
    add_executions(cell, account, start + timedelta(days=39, hours=12), n=4)  # too recent
    clock.move(days=40)
    due = {(b.kind, b.executions, b.step_runs, b.oldest) for b in backlog(cell, clock)}
    assert due == {("rows", 3, 6, start),
                   ("execution_data", 2, 4, start + timedelta(days=25))}
    with cell.read() as conn:
        assert conn.execute(select(func.count()).select_from(executions)).scalar() == 9
        assert conn.execute(select(func.count()).select_from(purge_runs)).scalar() == 0
    result = purge(cell, clock)
    assert (result.counts.executions_deleted, result.counts.execution_data_cleared) == (3, 2)
    assert backlog(cell, clock) == []


class Interrupted(Exception):
    pass


def test_an_interrupted_purge_resumes_and_counts_nothing_twice(
        cell: Cell, clock: ManualClock, account: str) -> None:
    add_executions(cell, account, clock.now(), n=25, steps=3)
    [long_one] = add_executions(cell, account, clock.now(), n=1, steps=23)
    clock.move(days=31)
    limits = Limits(executions=10, step_runs=20)

    def crash(_: Any) -> None:
        raise Interrupted

    with pytest.raises(Interrupted):
        purge(cell, clock, limits=limits, on_batch=crash)
    with cell.read() as conn:
        first = conn.execute(select(purge_runs)).one()
    assert first.finished_at is None and first.batches == 1  # says it did not finish
    # Ten executions picked, more than 20 step runs between them: only step runs this time.
    assert (first.executions_deleted, first.step_runs_deleted) == (0, 20)

    stopped = purge(cell, clock, limits=limits, max_batches=2)  # a budget: stops, resumes
    assert not stopped.complete
    last = purge(cell, clock, limits=limits)
    assert last.complete
    with cell.read() as conn:
        assert conn.execute(select(func.count()).select_from(executions)).scalar() == 0
        assert conn.execute(select(func.count()).select_from(step_runs)).scalar() == 0
        runs = conn.execute(select(purge_runs).order_by(purge_runs.c.id)).all()
        audited = [orjson.loads(r.record) for r in iter_records(conn)]
    assert sum(r.executions_deleted for r in runs) == 26
    assert sum(r.step_runs_deleted for r in runs) == 25 * 3 + 23
    purges = [a for a in audited if a["action"] == "data.purged"]
    assert sum(a["details"]["executions"] for a in purges) == 26
    assert sum(a["details"]["step_runs"] for a in purges) == 25 * 3 + 23
    assert state(cell, account, long_one) == {"exists": False}


def test_a_run_is_recorded_and_audited(cell: Cell, clock: ManualClock, account: str) -> None:
    add_executions(cell, account, clock.now(), n=3)
    clock.move(days=31)
    result = purge(cell, clock)
    with cell.read() as conn:
        run = conn.execute(select(purge_runs)).one()
        audited = [orjson.loads(r.record) for r in iter_records(conn)]
    assert run.id == result.run_id and run.trigger == "housekeeping" and run.complete
    assert run.started_at == clock.now() and run.finished_at == clock.now()
    assert (run.executions_deleted, run.step_runs_deleted, run.batches) == (3, 6, 1)
    [event] = [a for a in audited if a["action"] == "data.purged"]
    assert event["account_id"] == account and event["target"] == f"account:{account}"
    assert event["actor"] == {"kind": "system", "id": "sealflow"}
    assert event["details"] == {"kind": "rows", "executions": 3, "step_runs": 6,
                                "run": run.id,
                                "finished_before": (clock.now() - timedelta(days=30))
                                .isoformat()}


def test_no_audit_record_no_purge(cell: Cell, clock: ManualClock, account: str,
                                  tmp_path: Path) -> None:
    """Fail closed (A2): the audit table gone, the batch rolls back whole."""
    add_executions(cell, account, clock.now(), n=2)
    clock.move(days=31)
    with cell.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE audit_records")
    with pytest.raises(Exception, match=r"audit trail .* cannot be written"):
        purge(cell, clock)
    with sqlite3.connect(tmp_path / "data" / "us.db") as raw:
        assert raw.execute("SELECT count(*) FROM executions").fetchone()[0] == 2
        assert raw.execute("SELECT count(*) FROM step_runs").fetchone()[0] == 4
        assert raw.execute("SELECT count(*) FROM purge_runs").fetchone()[0] == 0


def test_server_log_files_go_after_thirty_days(cell: Cell, clock: ManualClock,
                                               tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    now = clock.now()  # 2026-11-29 12:00 UTC
    # The file of a day holds lines up to its end: 2026-10-29's newest is 30 d 12 h old,
    # 2026-10-30's 29 d 12 h.
    old, kept = (logs / log_file_name(d) for d in (now.date() - timedelta(days=31),
                                                   now.date() - timedelta(days=30)))
    other = logs / "notes.txt"
    for path in (old, kept, other):
        path.write_text("{}\n")
    files = LogFiles(logs)
    result = purge(cell, clock, log_files=files)
    assert not old.exists() and kept.exists() and other.exists()
    assert result.counts.log_files_deleted == 1
    end_of_kept_day = datetime(2026, 10, 31, tzinfo=UTC)
    clock.t = end_of_kept_day + timedelta(days=29, hours=23)
    purge(cell, clock, log_files=files)
    assert kept.exists()
    clock.move(hours=2)  # its last line is 30 days 1 hour old
    result = purge(cell, clock, log_files=files)
    assert not kept.exists() and other.exists()
    with cell.read() as conn:
        runs = conn.execute(select(purge_runs.c.log_files_deleted)).scalars().all()
        audited = [orjson.loads(r.record) for r in iter_records(conn)]
    assert runs == [1, 1]
    assert [a["details"]["files"] for a in audited if a["target"] == "server_logs"] == [
        [old.name], [kept.name]]


def test_the_housekeeping_job_purges_in_a_thread_of_its_own(
        cell: Cell, clock: ManualClock, account: str, tmp_path: Path) -> None:
    add_executions(cell, account, clock.now(), n=5)
    old_file = tmp_path / "logs" / log_file_name(clock.now().date() - timedelta(days=40))
    old_file.parent.mkdir()
    old_file.write_text("{}\n")
    clock.move(days=31)
    purger = Purger(clock, log_files=LogFiles(old_file.parent), log_region="us", pause=0.0)
    assert purger(cell) == 0  # returns at once; the run is a thread
    purger.join(30)
    with cell.read() as conn:
        assert conn.execute(select(func.count()).select_from(executions)).scalar() == 0
        run = conn.execute(select(purge_runs)).one()
    assert (run.executions_deleted, run.log_files_deleted, run.complete) == (5, 1, True)
    assert not old_file.exists()
    purger.close()
    add_executions(cell, account, clock.now() - timedelta(days=31), n=1)
    purger(cell)  # closed: starts nothing
    purger.join(30)
    with cell.read() as conn:
        assert conn.execute(select(func.count()).select_from(executions)).scalar() == 1
