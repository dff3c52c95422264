"""The server's monitoring tasks: SIEM delivery and alert evaluation, started with the
embedded workers (bootstrap.Platform.start) and stopped before them."""

from __future__ import annotations

from dataclasses import dataclass

from sealflow.alerts.evaluate import AlertEvaluator
from sealflow.clock import Clock
from sealflow.config import Settings
from sealflow.regions.cells import Cells
from sealflow.siem.delivery import SiemDelivery


@dataclass
class Monitor:
    siem: SiemDelivery
    alerts: AlertEvaluator

    async def start(self) -> None:
        await self.siem.start()
        await self.alerts.start()

    async def stop(self) -> None:
        await self.alerts.stop()
        await self.siem.stop()


def build_monitor(cells: Cells, clock: Clock, settings: Settings) -> Monitor:
    return Monitor(SiemDelivery(cells, clock, settings), AlertEvaluator(cells, clock, settings))
