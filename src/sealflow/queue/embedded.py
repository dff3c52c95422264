"""The embedded queue: a pool of asyncio workers inside the server process, over the cell
databases (X1). Claiming is one conditional UPDATE, so an execution is never run in two
places; a lease, renewed by the runner's heartbeat, lets a restarted or other process take
back executions whose holder died (W8)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from datetime import datetime

from sqlalchemy import select, update

from sealflow.clock import Clock
from sealflow.config import WorkerSettings
from sealflow.core.executions import Status
from sealflow.db.tables import executions
from sealflow.engine.records import lease_deadline
from sealflow.engine.runner import Runner
from sealflow.regions.cells import Cell, Cells

log = logging.getLogger("sealflow.queue")


def new_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _owner_dead(owner: str, host: str) -> bool:
    """True when `owner` was a process on this host that no longer exists."""
    parts = owner.split(":")
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class EmbeddedQueue:
    def __init__(
        self,
        *,
        cells: Cells,
        runner: Runner,
        settings: WorkerSettings,
        clock: Clock,
        regions: list[str] | None = None,
    ) -> None:
        self.cells = cells
        self.runner = runner
        self.settings = settings
        self.clock = clock
        self.regions = regions or list(cells)
        self.owner = new_owner()
        self._host = socket.gethostname()
        self._tasks: set[asyncio.Task[None]] = set()
        self._reserved = 0
        self._wake: dict[str, asyncio.Event] = {}
        # Regions that may hold queued executions this process has not started: a submit()
        # that found no free slot, or a claim that filled every free slot.
        self._backlog: set[str] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = False

    # ------------------------------------------------------------------ interface
    def submit(self, region: str, execution_id: str) -> None:
        self._backlog.add(region)
        event = self._wake.get(region)
        if event is not None:
            event.set()

    def reserve(self) -> str | None:
        if self._stopping or self._free() <= 0:
            return None
        self._reserved += 1
        return self.owner

    def release(self) -> None:
        self._reserved -= 1

    def start_reserved(self, region: str, execution_id: str, fresh: object = None) -> None:
        self._reserved -= 1
        self._spawn(region, execution_id, fresh)

    async def start(self) -> None:
        for region in self.regions:
            self._wake[region] = asyncio.Event()
            self._reclaim(self.cells[region])
            self._loops.append(asyncio.create_task(self._region_loop(region)))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._loops:
            task.cancel()
        for task in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.settings.shutdown_grace_s)
            for task in pending:  # the runner hands each one back to the queue
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)

    @property
    def running(self) -> bool:
        """True while every region's claim loop is alive (readiness, monitoring.health)."""
        return bool(self._loops) and not self._stopping and not any(
            t.done() for t in self._loops)

    # ------------------------------------------------------------------ workers
    def _free(self) -> int:
        return self.settings.concurrency - len(self._tasks) - self._reserved

    def _spawn(self, region: str, execution_id: str, fresh: object = None) -> None:
        task = asyncio.create_task(self._run(region, execution_id, fresh))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        # A slot is free: look for more work where some may be waiting. Other processes'
        # executions are found by the poll (poll_interval_s), as before.
        for region in self._backlog:
            event = self._wake.get(region)
            if event is not None:
                event.set()

    async def _run(self, region: str, execution_id: str, fresh: object = None) -> None:
        try:
            if fresh is None:
                await self.runner.run(region, execution_id, self.owner)
            else:  # inserted by this process a moment ago: the runner need not read it
                await self.runner.run(region, execution_id, self.owner, fresh=fresh)
        except asyncio.CancelledError:
            raise
        except Exception:  # the lease expires and the execution is taken up again
            log.exception("worker failed on execution %s", execution_id)

    async def _region_loop(self, region: str) -> None:
        cell = self.cells[region]
        event = self._wake[region]
        reclaim_every = max(1.0, self.settings.lease_s / 3)
        last_reclaim = self.clock.monotonic()
        while True:
            event.clear()
            try:
                if self.clock.monotonic() - last_reclaim >= reclaim_every:
                    self._reclaim(cell)
                    last_reclaim = self.clock.monotonic()
                free = self._free()
                if free > 0:
                    self._backlog.discard(region)
                    claimed = self._claim(cell, free)
                    if len(claimed) == free:  # maybe more
                        self._backlog.add(region)
                    for execution_id in claimed:
                        self._spawn(region, execution_id)
            except Exception:  # database briefly unavailable: try again next tick
                log.exception("claiming executions in region %s failed", region)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.settings.poll_interval_s)

    def _claim(self, cell: Cell, limit: int) -> list[str]:
        now = self.clock.now()
        due = (
            select(executions.c.id)
            .where(executions.c.status == Status.QUEUED, executions.c.run_after <= now)
            .order_by(executions.c.run_after)
            .limit(limit)
        )
        if cell.engine.dialect.name == "postgresql":
            due = due.with_for_update(skip_locked=True)
        stmt = (
            update(executions)
            .where(executions.c.id.in_(due.scalar_subquery()), executions.c.status == Status.QUEUED)
            .values(
                status=Status.RUNNING,
                lease_owner=self.owner,
                lease_expires_at=lease_deadline(now, self.settings.lease_s),
                started_at=_coalesce_started(now),
            )
            .returning(executions.c.id)
        )
        with cell.write() as conn:
            return [r.id for r in conn.execute(stmt).all()]

    def _reclaim(self, cell: Cell) -> int:
        """Hand back running executions whose holder is gone: lease expired, or a process of
        this host that no longer exists (a restart after a crash resumes at once)."""
        now = self.clock.now()
        with cell.write() as conn:
            rows = conn.execute(
                select(
                    executions.c.id, executions.c.lease_owner, executions.c.lease_expires_at
                ).where(executions.c.status == Status.RUNNING)
            ).all()
            stale = [
                r.id
                for r in rows
                if r.lease_owner != self.owner
                and (
                    r.lease_expires_at is None
                    or r.lease_expires_at < now
                    or _owner_dead(r.lease_owner or "", self._host)
                )
            ]
            for execution_id in stale:
                conn.execute(
                    update(executions)
                    .where(executions.c.id == execution_id, executions.c.status == Status.RUNNING)
                    .values(
                        status=Status.QUEUED, lease_owner=None, lease_expires_at=None, run_after=now
                    )
                )
        if stale:
            log.info("resumed %d interrupted executions in region %s", len(stale), cell.region)
        return len(stale)


def _coalesce_started(now: datetime):  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    return func.coalesce(executions.c.started_at, now)
