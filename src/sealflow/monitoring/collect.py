"""What /metrics reads from the databases when it is scraped (A3): queue depth and purge
backlog per region. Read at scrape time rather than kept in memory so that every node of a
scaled-out deployment reports the same truth, and nothing drifts.

Both are single COUNT queries per region; a region whose database does not answer is left
out of the output (readiness names it) rather than failing the whole scrape."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, func, select
from sqlalchemy.exc import SQLAlchemyError

from sealflow.clock import Clock
from sealflow.core.executions import Status
from sealflow.db.tables import executions
from sealflow.regions.cells import Cells

log = logging.getLogger("sealflow.monitoring")

# D3's default lifetime of raw execution data. An account may shorten it (to 24 h), never
# lengthen it, so counting executions finished longer ago than this and not purged is a
# lower bound of the real backlog: it never reports a backlog that is not there.
DEFAULT_RETENTION = timedelta(days=10)


def queue_depth(conn: Connection, now: datetime) -> dict[str, int]:
    """Executions waiting to run now (`queued`), waiting for a later retry (`delayed`), and
    `running`."""
    # Grouped by the labelled expression: written twice, `:now` would be two parameters, and
    # PostgreSQL refuses to group by an expression that is not the one selected.
    due_now = (executions.c.run_after <= now).label("due")
    rows = conn.execute(
        select(executions.c.status, due_now, func.count())
        .where(executions.c.status.in_([Status.QUEUED.value, Status.RUNNING.value]))
        .group_by(executions.c.status, due_now)
    ).all()
    out = {"queued": 0, "delayed": 0, "running": 0}
    for status, due, count in rows:
        if status == Status.RUNNING.value:
            out["running"] += int(count)
        else:
            out["queued" if due else "delayed"] += int(count)
    return out


def purge_backlog(conn: Connection, now: datetime) -> int:
    """Executions whose raw data is past the default retention and not purged yet (a lower
    bound: see DEFAULT_RETENTION). Uses the purge's marker (executions.purged, bit 1) when
    the schema has it."""
    query = select(func.count()).select_from(executions).where(
        executions.c.finished_at < now - DEFAULT_RETENTION)
    purged: Any = executions.c.get("purged")
    if purged is not None:
        query = query.where(purged.op("&")(1) == 0)
    return int(conn.execute(query).scalar_one())


class CellCollector(Collector):
    """A prometheus_client collector over the platform's cells (registered per scrape)."""

    def __init__(self, cells: Cells, clock: Clock, in_flight: int | None = None) -> None:
        self.cells = cells
        self.clock = clock
        self.in_flight = in_flight

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "sealflow_queue_depth", "Executions by queue state (queued: due now, delayed: "
            "waiting for a retry, running), per region", labels=["region", "state"])
        backlog = GaugeMetricFamily(
            "sealflow_purge_backlog", "Executions past the default retention whose raw data "
            "is not purged yet (lower bound), per region", labels=["region"])
        now = self.clock.now()
        for region in self.cells:
            try:
                with self.cells[region].read() as conn:
                    states = queue_depth(conn, now)
                    late = purge_backlog(conn, now)
            except SQLAlchemyError as exc:
                log.warning("metrics: region %s database unavailable (%s)", region,
                            type(exc).__name__)
                continue
            for state, count in states.items():
                depth.add_metric([region, state], count)
            backlog.add_metric([region], late)
        yield depth
        yield backlog
        if self.in_flight is not None:
            busy = GaugeMetricFamily("sealflow_workers_busy",
                                     "Executions this process's worker pool is running now")
            busy.add_metric([], self.in_flight)
            yield busy
