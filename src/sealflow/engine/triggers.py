"""Schedule triggers (W3). Each tick, the due schedules of a cell fire: the schedule's
last_tick advances by compare-and-set in the same transaction that queues the execution, so
with many nodes a tick fires once. Ticks missed while the server was down run once, not
once per missed tick."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from croniter import croniter
from sqlalchemy import select, update

from sealflow.clock import Clock
from sealflow.core.errors import SealflowError
from sealflow.db.tables import schedule_state, workflows
from sealflow.periodic import Periodic
from sealflow.regions.cells import Cell, Cells
from sealflow.services.executions import insert_execution
from sealflow.services.workflows import DefinitionCache

log = logging.getLogger("sealflow.schedules")

MAX_CATCH_UP = 100_000  # ticks walked to find the latest due one after a long outage


def latest_due_tick(
    cron: str, timezone: str, last_tick: datetime, now: datetime
) -> datetime | None:
    """The latest tick in (last_tick, now], or None when none is due."""
    tz = ZoneInfo(timezone)
    it = croniter(cron, last_tick.astimezone(tz))
    latest = None
    for _ in range(MAX_CATCH_UP):
        tick = it.get_next(datetime)
        if tick > now:
            break
        latest = tick
    return latest


class ScheduleTicker:
    def __init__(
        self,
        *,
        cells: Cells,
        clock: Clock,
        definitions: DefinitionCache,
        submit: Callable[[str, str], None],
        interval_s: float = 1.0,
        regions: list[str] | None = None,
        housekeeping: Sequence[Callable[[Cell], int]] = (),
        housekeeping_every_s: float = 60.0,
    ) -> None:
        self.cells = cells
        # Small periodic jobs per cell (the storage sweep now; purges later), on this loop.
        self.housekeeping = tuple(housekeeping)
        self.housekeeping_every_s = housekeeping_every_s
        self._last_housekeeping = float("-inf")
        self.clock = clock
        self.definitions = definitions
        self.submit = submit
        self.regions = regions or list(cells)
        self._loop = Periodic("schedule ticker", self._pass, interval_s, log)

    async def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        await self._loop.stop()

    async def _pass(self) -> None:
        for region in self.regions:
            try:
                self.tick(self.cells[region])
            except Exception:
                log.exception("schedule tick failed in region %s", region)
        self._housekeep()

    def _housekeep(self) -> None:
        now = self.clock.monotonic()
        if now - self._last_housekeeping < self.housekeeping_every_s:
            return
        self._last_housekeeping = now
        for region in self.regions:
            for job in self.housekeeping:
                try:
                    job(self.cells[region])
                except Exception:
                    log.exception("housekeeping %s failed in region %s",
                                  getattr(job, "__name__", job), region)

    def tick(self, cell: Cell) -> int:
        """Fire every due schedule of the cell once. Returns how many fired."""
        now = self.clock.now()
        with cell.read() as conn:
            rows = conn.execute(
                select(schedule_state, workflows.c.current_version)
                .join(workflows, workflows.c.id == schedule_state.c.workflow_id)
                .where(workflows.c.enabled.is_(True), workflows.c.deleted_at.is_(None))
            ).all()
        fired = 0
        for row in rows:
            try:
                created = self._fire(cell, row, now)
            except SealflowError as err:
                # One schedule that cannot be read (a shredded account's rows brought back by
                # a restore, an altered row) must not stop the others of the region.
                log.warning("schedule of workflow %s skipped: %s", row.workflow_id, err.code)
                continue
            if created is not None:
                fired += 1
                self.submit(cell.region, created)
        return fired

    def _fire(self, cell: Cell, row: Any, now: datetime) -> str | None:
        """Queue the schedule's due tick, once across nodes; the new execution id or None."""
        with cell.write() as conn:
            definition = self.definitions.get(
                cell, conn, row.account_id, row.workflow_id, row.current_version
            )
            trigger = definition.trigger
            if trigger.type != "schedule" or trigger.cron is None:
                return None
            tick = latest_due_tick(trigger.cron, trigger.timezone, row.last_tick, now)
            if tick is None:
                return None
            won = conn.execute(
                update(schedule_state)
                .where(
                    schedule_state.c.workflow_id == row.workflow_id,
                    schedule_state.c.last_tick == row.last_tick,
                )
                .values(last_tick=tick)
            ).rowcount
            if won != 1:  # another node fired this tick
                return None
            created = insert_execution(
                conn,
                self.clock,
                cell.vault,
                region=cell.region,
                account_id=row.account_id,
                workflow_id=row.workflow_id,
                version=row.current_version,
                trigger_type="schedule",
                payload={
                    "body": trigger.input,
                    "headers": {},
                    "query": {},
                    "scheduled_for": tick.isoformat(),
                },
            )
        return created.id
