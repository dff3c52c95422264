"""The purge (D3): applies each account's retention policy (services/retention.py) to its
executions, deletes server log files past their keep period, records what each run removed
(purge_runs; an Action.PURGE audit record in the transaction of every batch: fail closed),
and gives the disk space back (SQLite incremental vacuum).

A run is a loop of small batches (services/purge_batches.py), each its own short write
transaction, so workflows keep running beside it; between batches it pauses `pause` times
as long as the batch took (so it takes at most 1/(1+pause) of the write lock) and it stops at
its budget (time or batches) or when asked. It holds no state but the data: an interrupted
run leaves its purge_runs row with finished_at NULL and the next run carries on.

The cutoffs are fixed when a run starts (now - lifetime, per account): what expires during a
run goes in the next one, a minute later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import Connection, insert, update

from sealflow.audit.records import SYSTEM, Action, Actor
from sealflow.clock import Clock
from sealflow.db.tables_retention import purge_runs
from sealflow.logs import log_file_day
from sealflow.regions.cells import Cell
from sealflow.services import retention
from sealflow.services.purge_batches import (
    EXECUTION_DATA,
    PENDING,
    ROWS,
    STEP_LOGS,
    Backlog,
    Done,
    Limits,
    count_backlog,
    run_batch,
)

log = logging.getLogger("sealflow.purge")

VACUUM_CHUNK_PAGES = 1000  # ~4 MB a step: one short write lock each


@dataclass
class Counts:
    batches: int = 0
    execution_data_cleared: int = 0
    step_logs_cleared: int = 0
    executions_deleted: int = 0
    step_runs_deleted: int = 0
    log_files_deleted: int = 0
    pages_freed: int = 0

    def add(self, done: Done) -> dict[str, int]:
        """Adds a batch; returns the increments (for the run row)."""
        inc = {"batches": 1}
        if done.kind == ROWS:
            inc.update(executions_deleted=done.executions, step_runs_deleted=done.step_runs)
        elif done.kind == EXECUTION_DATA:
            inc.update(execution_data_cleared=done.executions)
        else:
            inc.update(step_logs_cleared=done.step_runs)
        for name, n in inc.items():
            setattr(self, name, getattr(self, name) + n)
        return inc

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class PurgeResult:
    region: str
    run_id: int | None  # None: nothing was due, so no run was recorded
    counts: Counts = field(default_factory=Counts)
    complete: bool = True  # False: stopped at its budget (or asked to) with work left


@dataclass(frozen=True)
class LogFiles:
    """The server log files this run looks after (sealflow.logs names them)."""

    directory: Path
    keep_days: int = 30

    def expired(self, now: datetime) -> list[tuple[Path, date]]:
        """Files whose last possible line (the end of their UTC day) is more than keep_days
        old. Other files in the directory are never touched."""
        if not self.directory.is_dir():
            return []
        limit = now - timedelta(days=self.keep_days)
        out = []
        for path in self.directory.iterdir():
            day = log_file_day(path.name)
            if day is not None and _end_of(day) <= limit:
                out.append((path, day))
        return sorted(out, key=lambda item: item[1])


def _end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def plan(policy: retention.RetentionPolicy, now: datetime
         ) -> list[tuple[str, datetime, datetime | None]]:
    """(kind, finished before, and not before) for an account: the rows past both lifetimes
    go first; then the part that the other outlives is cleared."""
    cut = policy.cutoffs(now)
    steps: list[tuple[str, datetime, datetime | None]] = [(ROWS, cut["rows"], None)]
    if policy.logs > policy.executions:
        steps.append((EXECUTION_DATA, cut["executions"], cut["rows"]))
    elif policy.logs < policy.executions:
        steps.append((STEP_LOGS, cut["logs"], cut["rows"]))
    return steps


class _Run:
    """The run's purge_runs row, inserted with its first batch (a run with nothing to do
    leaves no row) and updated in the transaction of every batch."""

    def __init__(self, trigger: str, started: datetime) -> None:
        self.trigger, self.started = trigger, started
        self.id: int | None = None
        self.counts = Counts()

    def count(self, conn: Connection, inc: dict[str, int]) -> None:
        if self.id is None:
            row = {f.name: 0 for f in fields(Counts)} | inc
            key: Any = conn.execute(insert(purge_runs).values(
                trigger=self.trigger, started_at=self.started, complete=False, **row)
            ).inserted_primary_key
            self.id = int(key[0])
            return
        conn.execute(update(purge_runs).where(purge_runs.c.id == self.id).values(
            {purge_runs.c[k]: purge_runs.c[k] + n for k, n in inc.items()}))


def purge_cell(
    cell: Cell,
    clock: Clock,
    *,
    trigger: Literal["housekeeping", "cli"] = "housekeeping",
    actor: Actor = SYSTEM,
    limits: Limits = Limits(),  # noqa: B008 (frozen)
    budget_s: float | None = None,
    max_batches: int | None = None,
    pause: float = 0.0,
    stop: threading.Event | None = None,
    log_files: LogFiles | None = None,
    on_batch: Callable[[Counts], None] | None = None,
    checkpoint: Literal["passive", "truncate"] = "passive",
) -> PurgeResult:
    """One purge run of the cell. See the module's docstring."""
    now = clock.now()
    began = clock.monotonic()
    run = _Run(trigger, now)
    result = PurgeResult(cell.region, None, run.counts)

    def over() -> bool:
        return ((stop is not None and stop.is_set())
                or (budget_s is not None and clock.monotonic() - began >= budget_s)
                or (max_batches is not None and run.counts.batches >= max_batches))

    with cell.read() as conn:
        policies = retention.policies(conn)
    # An exception (or a crash) leaves the run's row unfinished: finished_at NULL says so.
    for account_id, policy in policies.items():
        for kind, before, _ in plan(policy, now):
            for value in PENDING[kind]:
                while True:
                    if over():
                        result.complete = False
                        stopping = stop is not None and stop.is_set()
                        _close(cell, run, result, clock, checkpoint, pause, vacuum=not stopping)
                        return result
                    took = time.perf_counter()
                    if not _one_batch(cell, clock, run, actor, account_id, kind, value,
                                      before, limits):
                        break
                    if on_batch is not None:
                        on_batch(run.counts)
                    if pause > 0:
                        wait = (time.perf_counter() - took) * pause
                        if stop is not None:
                            stop.wait(wait)
                        else:
                            time.sleep(wait)
    if log_files is not None:
        _delete_log_files(cell, clock, run, actor, log_files)
    _close(cell, run, result, clock, checkpoint, pause)
    return result


def _one_batch(cell: Cell, clock: Clock, run: _Run, actor: Actor, account_id: str,
               kind: str, value: int, before: datetime, limits: Limits) -> bool:
    with cell.write() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Deleted and replaced content is zeroed in its page (FAST: no extra I/O), so no
            # copy of purged data stays readable in the file; freed pages go with the
            # incremental vacuum. Per connection: set for this batch, then put back.
            kept = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
            conn.exec_driver_sql("PRAGMA secure_delete=FAST")
        try:
            done = run_batch(conn, cell.vault, account_id=account_id, kind=kind,
                             value=value, before=before, limits=limits)
        finally:
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA secure_delete={int(kept or 0)}")
        if done is None:
            return False
        inc = run.counts.add(done)
        run.count(conn, inc)
        # Fail closed (A2): no record, no purge (the batch rolls back with it).
        cell.audit.record(conn, account_id=account_id, actor=actor, action=Action.PURGE,
                          target=f"account:{account_id}", at=clock.now(), details={
                              "kind": kind, "executions": done.executions,
                              "step_runs": done.step_runs, "run": run.id,
                              "finished_before": before.isoformat()})
    return True


def _delete_log_files(cell: Cell, clock: Clock, run: _Run, actor: Actor,
                      files: LogFiles) -> None:
    if not files.expired(clock.now()):
        return
    with cell.write() as conn:
        # Listed again under the write lock: another process purging the same cell (serve
        # and worker) may have just deleted and recorded them.
        expired = files.expired(clock.now())
        if not expired:
            return
        run.counts.log_files_deleted += len(expired)
        run.count(conn, {"log_files_deleted": len(expired)})
        cell.audit.record(conn, account_id=None, actor=actor, action=Action.PURGE,
                          target="server_logs", at=clock.now(), details={
                              "kind": "log_files", "run": run.id,
                              "files": [path.name for path, _ in expired]})
        # Deleted inside the transaction: a failure rolls the record back. (A crash between
        # the last unlink and the commit would lose the record of files already gone; the
        # next run finds nothing left to record.)
        for path, _ in expired:
            path.unlink(missing_ok=True)


def _close(cell: Cell, run: _Run, result: PurgeResult, clock: Clock,
           checkpoint: Literal["passive", "truncate"], pause: float,
           vacuum: bool = True) -> None:
    """Give the space back (not when the server is stopping: the free pages wait for the
    next run that deletes, and SQLite reuses them meanwhile) and close the run's row."""
    if run.id is None:
        return
    result.run_id = run.id
    if vacuum and (run.counts.executions_deleted or run.counts.step_runs_deleted):
        run.counts.pages_freed = give_back_space(cell, checkpoint=checkpoint, pause=pause)
    with cell.write() as conn:
        conn.execute(update(purge_runs).where(purge_runs.c.id == run.id).values(
            finished_at=clock.now(), complete=result.complete,
            pages_freed=run.counts.pages_freed))


def sqlite_auto_vacuum(cell: Cell) -> str | None:
    """'incremental', 'full' or 'none' for a SQLite cell; None for PostgreSQL."""
    if cell.engine.dialect.name != "sqlite":
        return None
    with cell.engine.connect() as conn:
        mode = conn.exec_driver_sql("PRAGMA auto_vacuum").scalar()
    return {0: "none", 1: "full", 2: "incremental"}.get(int(mode or 0), str(mode))


def give_back_space(cell: Cell, *, max_pages: int | None = None,
                    checkpoint: Literal["passive", "truncate"] = "passive",
                    pause: float = 0.0) -> int:
    """SQLite: return the free pages to the file system, VACUUM_CHUNK_PAGES per short write,
    then checkpoint the WAL (the file shrinks at the checkpoint). Returns the pages freed.
    PostgreSQL: nothing to do here; autovacuum makes the space of the deleted rows reusable.
    A SQLite file without incremental auto-vacuum (see README) frees nothing: logged."""
    mode = sqlite_auto_vacuum(cell)
    if mode is None:
        return 0
    if mode != "incremental":
        log.warning("region %s: the database has auto_vacuum=%s; purged space stays in the "
                    "file until it is compacted (`sealflow purge --compact`, server stopped)",
                    cell.region, mode)
        return 0
    freed = 0
    with cell.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        while max_pages is None or freed < max_pages:
            free = int(raw.execute("PRAGMA freelist_count").fetchone()[0])
            if free == 0:
                break
            step = min(free, VACUUM_CHUNK_PAGES)
            # executescript runs the pragma to completion as its own transaction (a plain
            # execute() would free one page per call).
            took = time.perf_counter()
            raw.executescript(f"PRAGMA incremental_vacuum({int(step)})")
            freed += step
            if pause > 0:  # paced like the batches: writers get the lock in between
                time.sleep((time.perf_counter() - took) * pause)
        raw.execute(f"PRAGMA wal_checkpoint({checkpoint.upper()})").fetchall()
    return freed


def compact(cell: Cell) -> str:
    """Turn incremental auto-vacuum on for an existing SQLite file and rewrite it (VACUUM):
    needs the server stopped (it holds the database for the whole rewrite)."""
    if cell.engine.dialect.name != "sqlite":
        return "not SQLite: nothing to do (PostgreSQL reuses the space through autovacuum)"
    with cell.engine.connect() as conn:
        raw: Any = conn.connection.driver_connection
        raw.execute("PRAGMA auto_vacuum=INCREMENTAL")
        raw.execute("VACUUM")
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    return f"auto_vacuum={sqlite_auto_vacuum(cell)}"


def backlog(cell: Cell, clock: Clock) -> list[Backlog]:
    """What a purge run would handle now, per account and kind (the dry run; also the purge
    backlog that monitoring can watch). Reads only."""
    now = clock.now()
    out: list[Backlog] = []
    with cell.read() as conn:
        for account_id, policy in retention.policies(conn).items():
            for kind, before, since in plan(policy, now):
                found = count_backlog(conn, account_id=account_id, kind=kind,
                                      before=before, since=since)
                if found is not None:
                    out.append(found)
    return out


class Purger:
    """The housekeeping job (bootstrap: ScheduleTicker, every minute). The ticker calls it on
    the event loop, which must not wait for a purge: a call starts the cell's run in a thread
    of its own (unless one is still going) and returns at once. A run works at most
    `budget_s`, so a backlog is worked through a minute at a time, and pauses `pause` times
    as long as each batch took: the purge takes at most 1/(1 + pause) of the time (a
    seventh by default). While a batch holds the write lock the server's own writes wait, so
    the loss of throughput while purging is about that share: bench/purge.py measures it (at
    pause 1.0 a server on one core lost half its throughput, at 4.0 about a quarter).
    Batches of 100 executions keep each wait short (~20 ms)."""

    def __init__(self, clock: Clock, *, log_files: LogFiles | None, log_region: str | None,
                 budget_s: float = 40.0, pause: float = 6.0,
                 limits: Limits = Limits(executions=100)  # noqa: B008 (frozen)
                 ) -> None:
        self.clock, self.log_files, self.log_region = clock, log_files, log_region
        self.budget_s, self.pause, self.limits = budget_s, pause, limits
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self.__name__ = "purge"

    def __call__(self, cell: Cell) -> int:
        running = self._threads.get(cell.region)
        if self._stop.is_set() or (running is not None and running.is_alive()):
            return 0
        thread = threading.Thread(target=self._run, args=(cell,), daemon=True,
                                  name=f"sealflow-purge-{cell.region}")
        self._threads[cell.region] = thread
        thread.start()
        return 0

    def _run(self, cell: Cell) -> None:
        try:
            result = purge_cell(
                cell, self.clock, budget_s=self.budget_s, pause=self.pause, stop=self._stop,
                limits=self.limits,
                log_files=self.log_files if cell.region == self.log_region else None)
        except Exception:
            log.exception("purge failed in region %s", cell.region)
            return
        if result.run_id is not None:
            log.info("purge run %s in region %s: %s%s", result.run_id, cell.region,
                     result.counts.as_dict(), "" if result.complete else " (more left)")

    def join(self, timeout_s: float | None = None) -> None:
        """Wait for the runs going now (tests, the bench)."""
        for thread in list(self._threads.values()):
            thread.join(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the runs (between two batches) and wait for them."""
        self._stop.set()
        for thread in self._threads.values():
            thread.join(timeout_s)
