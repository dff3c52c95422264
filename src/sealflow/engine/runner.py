"""Runs one claimed execution from start to end: loads it, lets the walker (engine.walker)
run its graph under the wall-time limit while a heartbeat keeps the lease, and ends it in
exactly one terminal state, or hands it back (shutdown, platform fault). Completed steps are
never run again on resume.

Database calls are short synchronous transactions made from the event loop: with SQLite a
thread hop costs more than the write itself (see bench/webhook.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx

from sealflow.clock import Clock
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.core.errors import LimitExceeded, SealflowError
from sealflow.core.executions import Status
from sealflow.core.limits import Limits
from sealflow.core.workflows import Graph
from sealflow.db.sealed import DataDestroyed, open_
from sealflow.engine import records
from sealflow.engine.attempts import StepAttempts
from sealflow.engine.interceptors import Chain
from sealflow.engine.notify import ResponseHub
from sealflow.engine.state import RunState, Stop, error_record
from sealflow.engine.walker import GraphWalker
from sealflow.monitoring.metrics import metrics
from sealflow.redaction import scope as redaction_scope
from sealflow.redaction.redactor import Redactor
from sealflow.regions.cells import Cells
from sealflow.services import storage_lifetimes
from sealflow.services.account_settings import RedactionPolicies
from sealflow.services.workflows import DefinitionCache


@dataclass(frozen=True)
class PlatformRetry:
    """Growing waits for platform faults (W6): min_s doubling up to max_s, `attempts` times."""

    attempts: int = 15
    min_s: float = 30.0
    max_s: float = 1800.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.min_s * 2.0 ** max(0, attempt - 1)))


class Runner:
    def __init__(
        self,
        *,
        cells: Cells,
        registry: ConnectorRegistry,
        definitions: DefinitionCache,
        chain: Chain,
        limits: Limits,
        clock: Clock,
        hub: ResponseHub,
        http: Callable[[], httpx.AsyncClient],
        lease_s: float,
        platform_retry: PlatformRetry,
        dispatch: Callable[[str, str], None],
        rng: random.Random | None = None,
        redaction: RedactionPolicies | None = None,
    ) -> None:
        self.cells = cells
        self.redaction = redaction or RedactionPolicies(cells, clock)
        self.definitions = definitions
        self.limits = limits
        self.clock = clock
        self.hub = hub
        self.lease_s = lease_s
        self.platform_retry = platform_retry
        attempts = StepAttempts(
            registry=registry, chain=chain, limits=limits, clock=clock, rng=rng or random.Random()
        )
        self.walker = GraphWalker(
            attempts=attempts,
            limits=limits,
            clock=clock,
            hub=hub,
            http=http,
            lease_s=lease_s,
            dispatch=dispatch,
            run_child=self.run,
        )

    # ----------------------------------------------------------------- one execution
    async def run(
        self, region: str, execution_id: str, owner: str, *, fresh: Any = None
    ) -> Status | None:
        """Run an execution this worker has claimed (status running, lease `owner`).
        Returns its terminal status, or None when it was handed back or lost.
        `fresh`: the row this process has just inserted (direct dispatch): no read needed,
        and it has no steps yet."""
        cell = self.cells[region]
        definition = None
        if fresh is not None:
            row, steps_done = fresh, {}
            definition = self.definitions.peek(cell, row.workflow_id, row.workflow_version)
        if definition is None:
            with cell.read() as conn:
                if fresh is None:
                    row = records.load_execution(conn, execution_id)
                    if row is None or row.status != Status.RUNNING or row.lease_owner != owner:
                        return None
                    steps_done = records.completed_steps(conn, execution_id)
                try:
                    definition = self.definitions.get(
                        cell, conn, row.account_id, row.workflow_id, row.workflow_version
                    )
                except SealflowError as exc:
                    definition = None
                    load_error: SealflowError = exc
        started = row.started_at or self.clock.now()
        run = RunState(
            cell=cell,
            row=row,
            owner=owner,
            steps_done=steps_done,
            deadline=started + timedelta(seconds=self.limits.execution_wall_time_s),
            seq=max((s.seq for s in steps_done.values()), default=0),
            steps_run=row.steps_run,
            redactor=Redactor(self.redaction.get(region, row.account_id)),
            response_sent=row.response is not None,
        )
        if definition is None:
            return self._finish(run, Status.FAILED, error=error_record(load_error))
        try:  # a fresh row carries its payload in clear; a stored one is opened (S6)
            trigger = (
                getattr(row, "trigger", None)
                if fresh is not None
                else open_(
                    cell.vault,
                    row.account_id,
                    "executions",
                    row.id,
                    "trigger_payload",
                    row.trigger_payload,
                )
            )
        except SealflowError as exc:
            return self._finish(run, Status.FAILED, error=error_record(exc))
        scope: dict[str, Any] = {"trigger": trigger, "steps": {}}
        with redaction_scope.using(run.redactor):  # the task (and its logs) runs with it
            main = asyncio.ensure_future(self._walk_with_deadline(run, definition.graph, scope))
        beat = asyncio.ensure_future(self._heartbeat(run, main))
        try:
            try:
                result = await main
            except asyncio.CancelledError:
                if run.stop_reason is None:  # this worker is shutting down
                    run.stop_reason = "shutdown"
                    main.cancel()
                    raise
                return self._stopped(run)
            except Stop as stop:
                return self._finish(run, Status.FAILED, error=stop.error)
            except TimeoutError:
                err = LimitExceeded(
                    "execution_wall_time_s",
                    self.limits.execution_wall_time_s,
                    "the execution ran too long",
                )
                return self._finish(run, Status.FAILED, error=error_record(err))
            except records.LeaseLost:
                return None
            except SealflowError as err:  # a limit or a workflow error outside a step
                return self._finish(run, Status.FAILED, error=error_record(err))
            except Exception as exc:  # a platform fault (database, bug): hand back, retry
                return self._platform_fault(run, exc)
            return self._finish(run, Status.SUCCEEDED, result=result)
        finally:
            beat.cancel()
            if run.stop_reason == "shutdown":
                self._hand_back(run, platform=False)

    async def _walk_with_deadline(self, run: RunState, graph: Graph, scope: dict[str, Any]) -> Any:
        left = (run.deadline - self.clock.now()).total_seconds()
        if left <= 0:
            raise TimeoutError
        async with asyncio.timeout(left):
            return await self.walker.walk(run, graph, scope, prefix="")

    async def _heartbeat(self, run: RunState, main: asyncio.Future[Any]) -> None:
        interval = self.lease_s / 3
        while not main.done():
            await asyncio.sleep(interval)
            until = records.lease_deadline(self.clock.now(), self.lease_s)
            with run.cell.write() as conn:
                held, cancel = records.heartbeat(conn, run.row.id, run.owner, until)
            if not held or cancel:
                run.stop_reason = "lease_lost" if not held else "cancelled"
                main.cancel()
                return

    def _stopped(self, run: RunState) -> Status | None:
        if run.stop_reason == "cancelled":
            return self._finish(
                run, Status.CANCELLED, error={"code": "cancelled", "message": "cancelled by user"}
            )
        return None  # lease lost: the new holder finishes it

    def _finish(
        self,
        run: RunState,
        status: Status,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> Status | None:
        response = None
        if run.row.respond_wait and not run.response_sent:
            response = self._default_response(run.row.id, status, result)
        response = run.pending_response or response
        # The end is recorded and published redacted (S5), like every step record.
        result, error, response = (run.redactor.value(v) for v in (result, error, response))
        try:
            try:
                self._write_end(run, status, result, error, response)
            except DataDestroyed:  # shredded meanwhile (S7): end it with nothing to seal
                run.deferred = None
                self._write_end(run, status, None, None, None)
        except records.LeaseLost:
            return None
        run.pending_response = None
        if response is not None:
            self.hub.publish(run.row.id, response)
        self.hub.publish(f"done:{run.row.id}", {"status": status, "result": result, "error": error})
        metrics().executions.labels(status.value).inc()
        return status

    def _write_end(
        self, run: RunState, status: Status, result: Any, error: Any, response: Any
    ) -> None:
        with run.cell.write() as conn:
            step_done = self.walker.flush_deferred(run, conn)
            records.finish(
                conn,
                run.cell.vault,
                account_id=run.row.account_id,
                execution_id=run.row.id,
                owner=run.owner,
                status=status,
                now=self.clock.now(),
                result=result,
                error=error,
                response=response,
                step_done=step_done,
            )
            # D2: the execution's own storage goes with its end, in the same transaction.
            storage_lifetimes.delete_scope(conn, run.row.account_id, "execution", run.row.id)

    @staticmethod
    def _default_response(execution_id: str, status: Status, result: Any) -> dict[str, Any]:
        """The webhook answer when the workflow ended without a respond step. A failure says
        only that it failed and where to look: the caller is anonymous, and an error message
        can name internal hosts or carry data (the account reads it in the execution)."""
        if status == Status.SUCCEEDED:
            return {"status": 200, "headers": {}, "body": result}
        return {
            "status": 502,
            "headers": {},
            "body": {
                "error": {
                    "code": "workflow_failed" if status == Status.FAILED else str(status),
                    "execution_id": execution_id,
                    "message": f"the workflow {status}; its execution record has the details",
                }
            },
        }

    def _platform_fault(self, run: RunState, exc: Exception) -> Status | None:
        attempt = run.row.platform_attempts + 1
        if attempt > self.platform_retry.attempts:
            err = {
                "code": "platform_error",
                "retryable": False,
                "message": f"platform fault after {attempt - 1} retries: {type(exc).__name__}",
            }
            try:
                return self._finish(run, Status.FAILED, error=err)
            except Exception:
                return None
        self._hand_back(run, platform=True, delay=self.platform_retry.delay(attempt))
        return None

    def _hand_back(self, run: RunState, *, platform: bool, delay: float = 0.0) -> None:
        try:
            with run.cell.write() as conn:
                if self.walker.flush_deferred(run, conn):
                    records.step_lease(conn, run.row.id, run.owner, self.clock.now(), self.lease_s)
                if run.pending_response is not None:
                    records.set_response(
                        conn,
                        run.cell.vault,
                        run.row.account_id,
                        run.row.id,
                        run.owner,
                        run.pending_response,
                    )
                records.hand_back(
                    conn,
                    execution_id=run.row.id,
                    owner=run.owner,
                    run_after=self.clock.now() + timedelta(seconds=delay),
                    platform_attempt=platform,
                )
        except Exception:  # noqa: S110 - the lease expiry hands it back instead
            pass
