"""A clock the tests move (sealflow.clock.Clock): time never passes unless a test says so."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta


class ManualClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.t.timestamp()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)

    def move(self, **kw: float) -> None:
        self.t += timedelta(**kw)
