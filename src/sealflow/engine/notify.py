"""Waiting for an execution's webhook answer or its end.

In one process the runner resolves an asyncio future as soon as a respond step runs or the
execution ends. A waiter in another process (scale-out) polls the execution row instead, so
the answer is correct either way; the future only makes it fast."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any


class ResponseHub:
    def __init__(self) -> None:
        self._waiters: dict[str, list[asyncio.Future[Any]]] = {}

    def _future(self, execution_id: str) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(execution_id, []).append(fut)
        return fut

    def publish(self, execution_id: str, value: Any) -> None:
        for fut in self._waiters.pop(execution_id, []):
            if not fut.done():
                fut.set_result(value)

    async def wait(
        self,
        execution_id: str,
        timeout: float,
        poll: Callable[[], Any | None],
        poll_interval: float = 0.5,
        *,
        poll_first: bool = True,
    ) -> Any | None:
        """Wait up to `timeout` seconds. `poll()` reads the stored answer (None while there is
        none) so a result published by another process is seen too. Returns None on timeout."""
        fut = self._future(execution_id)
        try:
            # poll_first=False: the publisher is a task of this process that has not run
            # yet, so the answer cannot be stored already; the future will see it.
            found = poll() if poll_first else None
            if found is not None:
                return found
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                left = deadline - loop.time()
                if left <= 0:
                    return None
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(left, poll_interval))
                except TimeoutError:
                    found = poll()
                    if found is not None:
                        return found
        finally:
            waiters = self._waiters.get(execution_id)
            if waiters and fut in waiters:
                waiters.remove(fut)
                if not waiters:
                    del self._waiters[execution_id]
