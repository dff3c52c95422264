"""The StepContext the engine hands to a connector for one attempt of one step."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from sealflow.clock import Clock
from sealflow.connectors.base import Credential
from sealflow.connectors.transform import evaluate_jsonata
from sealflow.services.storage import ScopedStorage

MAX_LOG_LINES = 200
MAX_LOG_LINE = 2_000


class RunStepContext:
    def __init__(
        self,
        *,
        account_id: str,
        execution_id: str,
        step_name: str,
        timeout_s: float,
        clock: Clock,
        scope: Mapping[str, Any],
        logs: list[dict[str, Any]],
        http: Callable[[], httpx.AsyncClient],
        call_workflow: Callable[[str, Any, bool], Awaitable[Any]],
        respond: Callable[[int, Any, Mapping[str, str]], Awaitable[None]],
        storage: ScopedStorage | None = None,
    ) -> None:
        self.account_id = account_id
        self.execution_id = execution_id
        self.step_name = step_name
        self.timeout_s = timeout_s
        self.credential: Credential | None = None
        self._clock = clock
        self._scope = scope
        self._logs = logs
        self._http = http
        self._call_workflow = call_workflow
        self._respond = respond
        # Data storage (D1): bound to this execution's account, workflow and execution.
        self.storage = storage

    def log(self, message: str, **fields: Any) -> None:
        # Bounded, so a chatty connector cannot grow an execution record without limit.
        if len(self._logs) >= MAX_LOG_LINES:
            if len(self._logs) == MAX_LOG_LINES:
                self._logs.append({"t": self._clock.now().isoformat(), "msg": "log truncated"})
            return
        line = {"t": self._clock.now().isoformat(), "msg": message[:MAX_LOG_LINE]}
        line.update(fields)
        self._logs.append(line)

    def http_client(self) -> httpx.AsyncClient:
        return self._http()

    def evaluate(self, expression: str) -> Any:
        return evaluate_jsonata(expression, self._scope)

    async def sleep(self, seconds: float) -> None:
        await self._clock.sleep(seconds)

    async def call_workflow(self, workflow_id: str, payload: Any, *, wait: bool) -> Any:
        return await self._call_workflow(workflow_id, payload, wait)

    async def respond(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        await self._respond(status, body, headers)
