"""One background pass run every few seconds on the event loop (the schedule ticker, SIEM
delivery, alert evaluation): started and stopped with the workers. A pass that raises is
logged and the next one runs as usual: one bad pass must not end the work."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


class Periodic:
    def __init__(self, name: str, run: Callable[[], Awaitable[object]], interval_s: float,
                 log: logging.Logger) -> None:
        self.name = name
        self._run = run
        self.interval_s = interval_s
        self._log = log
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=self.name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            try:
                await self._run()
            except Exception:
                self._log.exception("%s: a pass failed", self.name)
            await asyncio.sleep(self.interval_s)
