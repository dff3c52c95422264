"""Runs one claimed execution: walks the graph, runs each step through the interceptor chain
with its timeout and retry policy, records every step before the next starts, and ends the
execution in exactly one terminal state. Completed steps are never run again on resume.

Database calls are short synchronous transactions made from the event loop: with SQLite a
thread hop costs more than the write itself (see bench/webhook.py)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from sealflow.clock import Clock
from sealflow.connectors.base import Connector, Operation
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.core.errors import ConnectorError, LimitExceeded, SealflowError
from sealflow.core.executions import Status
from sealflow.core.expressions import resolve
from sealflow.core.limits import Limits
from sealflow.core.scheduler import successor
from sealflow.core.workflows import Graph, Step
from sealflow.db import codec
from sealflow.engine import records
from sealflow.engine.context import RunStepContext
from sealflow.engine.interceptors import Chain, StepCall
from sealflow.engine.notify import ResponseHub
from sealflow.regions.cells import Cell, Cells
from sealflow.services.executions import insert_execution, workflow_for_run
from sealflow.services.workflows import DefinitionCache


@dataclass(frozen=True)
class PlatformRetry:
    """Growing waits for platform faults (W6): min_s doubling up to max_s, `attempts` times."""

    attempts: int = 15
    min_s: float = 30.0
    max_s: float = 1800.0

    def delay(self, attempt: int) -> float:
        return float(min(self.max_s, self.min_s * 2.0 ** max(0, attempt - 1)))


class _Stop(Exception):
    """A step failed with on_error: stop; the execution fails with this error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "step failed"))
        self.error = error


@dataclass
class _Run:
    cell: Cell
    row: Any
    owner: str
    steps_done: dict[str, Any]
    deadline: datetime
    seq: int
    steps_run: int
    response_sent: bool = False
    stop_reason: str | None = None  # "cancelled" | "lease_lost" | "shutdown"
    # The webhook answer of a respond step, written with that step's record, then published.
    pending_response: dict[str, Any] | None = None
    # The record of the execution's last step, written with the execution's end.
    deferred: tuple[int, records.StepRecord, datetime] | None = None
    last_output: Any = None
    children: list[str] = field(default_factory=list)


def error_record(err: SealflowError, step: str | None = None) -> dict[str, Any]:
    out = err.as_dict()
    if step is not None:
        out["step"] = step
    return out


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
    ) -> None:
        self.cells = cells
        self.registry = registry
        self.definitions = definitions
        self.chain = chain
        self.limits = limits
        self.clock = clock
        self.hub = hub
        self.http = http
        self.lease_s = lease_s
        self.platform_retry = platform_retry
        self.dispatch = dispatch  # wakes a worker for a queued execution (fire-and-forget)
        self.rng = rng or random.Random()

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
        run = _Run(
            cell=cell,
            row=row,
            owner=owner,
            steps_done=steps_done,
            deadline=started + timedelta(seconds=self.limits.execution_wall_time_s),
            seq=max((s.seq for s in steps_done.values()), default=0),
            steps_run=row.steps_run,
            response_sent=row.response is not None,
        )
        if definition is None:
            return self._finish(run, Status.FAILED, error=error_record(load_error))
        scope = {"trigger": codec.loads(row.trigger_payload), "steps": {}}
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
            except _Stop as stop:
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

    async def _walk_with_deadline(self, run: _Run, graph: Graph, scope: dict[str, Any]) -> Any:
        left = (run.deadline - self.clock.now()).total_seconds()
        if left <= 0:
            raise TimeoutError
        async with asyncio.timeout(left):
            return await self._walk(run, graph, scope, prefix="")

    async def _heartbeat(self, run: _Run, main: asyncio.Future[Any]) -> None:
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

    def _stopped(self, run: _Run) -> Status | None:
        if run.stop_reason == "cancelled":
            return self._finish(
                run, Status.CANCELLED, error={"code": "cancelled", "message": "cancelled by user"}
            )
        return None  # lease lost: the new holder finishes it

    def _finish(
        self, run: _Run, status: Status, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> Status | None:
        response = None
        if run.row.respond_wait and not run.response_sent:
            response = self._default_response(run.row.id, status, result, error)
        response = run.pending_response or response
        try:
            with run.cell.write() as conn:
                step_done = self._flush_deferred(run, conn)
                records.finish(
                    conn,
                    execution_id=run.row.id,
                    owner=run.owner,
                    status=status,
                    now=self.clock.now(),
                    result=result,
                    error=error,
                    response=response,
                    step_done=step_done,
                )
        except records.LeaseLost:
            return None
        run.pending_response = None
        if response is not None:
            self.hub.publish(run.row.id, response)
        self.hub.publish(f"done:{run.row.id}", {"status": status, "result": result, "error": error})
        return status

    @staticmethod
    def _default_response(
        execution_id: str, status: Status, result: Any, error: dict[str, Any] | None
    ) -> dict[str, Any]:
        """The webhook answer when the workflow ended without a respond step."""
        if status == Status.SUCCEEDED:
            return {"status": 200, "headers": {}, "body": result}
        return {
            "status": 502,
            "headers": {},
            "body": {
                "error": {
                    "code": "workflow_failed",
                    "execution_id": execution_id,
                    "message": (error or {}).get("message", status),
                }
            },
        }

    def _platform_fault(self, run: _Run, exc: Exception) -> Status | None:
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

    def _hand_back(self, run: _Run, *, platform: bool, delay: float = 0.0) -> None:
        try:
            with run.cell.write() as conn:
                if self._flush_deferred(run, conn):
                    records.step_lease(conn, run.row.id, run.owner, self.clock.now(), self.lease_s)
                if run.pending_response is not None:
                    records.set_response(conn, run.row.id, run.owner, run.pending_response)
                records.hand_back(
                    conn,
                    execution_id=run.row.id,
                    owner=run.owner,
                    run_after=self.clock.now() + timedelta(seconds=delay),
                    platform_attempt=platform,
                )
        except Exception:  # noqa: S110 - the lease expiry hands it back instead
            pass

    # ----------------------------------------------------------------- the graph
    async def _walk(self, run: _Run, graph: Graph, scope: dict[str, Any], prefix: str) -> Any:
        name = graph.start
        last: Any = None
        while name is not None:
            step = graph.steps[name]
            path = prefix + name
            done = run.steps_done.get(path)
            if done is not None:  # recorded before a restart: reuse, never run again
                output = codec.loads(done.output)
                if done.status == "failed":
                    output = {"error": codec.loads(done.error)}
                scope["steps"][name] = output
                last, name = output, done.next_step
                continue
            self._check_limits(run)
            if step.control == "loop":
                last, name = await self._loop(run, step, scope, path)
            else:
                last, name = await self._step(run, step, scope, path)
            scope["steps"][step.name] = last
        return last

    def _check_limits(self, run: _Run) -> None:
        self.limits.check(
            "max_steps_per_execution", run.steps_run + 1, "steps run in this execution"
        )

    async def _loop(
        self, run: _Run, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[Any, str | None]:
        assert step.body is not None
        started, t0 = self.clock.now(), self.clock.monotonic()
        header, logs = await self._attempts(run, step, scope, path)
        if isinstance(header, _Failure):
            return self._failed(run, step, path, header, started, t0, logs)
        items = header.output["items"]
        try:
            self.limits.check("max_loop_iterations", len(items), f"loop {step.name} items")
        except LimitExceeded as err:
            return self._failed(run, step, path, _Failure(err, header.input, 1), started, t0, logs)
        results = []
        for index, item in enumerate(items):
            body_scope = {
                "trigger": scope["trigger"],
                "steps": dict(scope["steps"]),
                "item": item,
                "index": index,
            }
            results.append(await self._walk(run, step.body, body_scope, f"{path}[{index}]."))
        output = {"results": results, "count": len(results)}
        nxt = successor(step, output, failed=False)
        self._record(
            run,
            step,
            path,
            "succeeded",
            input_=header.input,
            output=output,
            logs=logs,
            attempts=header.attempts,
            started=started,
            t0=t0,
            nxt=nxt,
        )
        return output, nxt

    async def _step(
        self, run: _Run, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[Any, str | None]:
        started, t0 = self.clock.now(), self.clock.monotonic()
        outcome, logs = await self._attempts(run, step, scope, path)
        if isinstance(outcome, _Failure):
            return self._failed(run, step, path, outcome, started, t0, logs)
        output = outcome.output
        nxt = successor(step, output, failed=False)
        self._record(
            run,
            step,
            path,
            "succeeded",
            input_=outcome.input,
            output=output,
            logs=logs,
            attempts=outcome.attempts,
            started=started,
            t0=t0,
            nxt=nxt,
        )
        return output, nxt

    def _failed(
        self,
        run: _Run,
        step: Step,
        path: str,
        failure: _Failure,
        started: datetime,
        t0: float,
        logs: list[dict[str, Any]],
    ) -> tuple[Any, str | None]:
        error = error_record(failure.error, step.name)
        stop = step.on_error == "stop"
        nxt = None if stop else successor(step, None, failed=True)
        self._record(
            run,
            step,
            path,
            "failed",
            input_=failure.input,
            error=error,
            logs=logs,
            attempts=failure.attempts,
            started=started,
            t0=t0,
            nxt=nxt,
        )
        if stop:
            raise _Stop(error)
        return {"error": error}, nxt

    async def _attempts(
        self, run: _Run, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[_Success | _Failure, list[dict[str, Any]]]:
        """Run a step's attempts under its retry policy, each through the chain."""
        logs: list[dict[str, Any]] = []
        connector = self.registry.get(step.connector)
        operation = connector.operation(step.operation)
        if operation is None:  # validation prevents this; a removed plugin can cause it
            missing = ConnectorError(
                f"connector {step.connector} has no operation {step.operation}",
                code="unknown_operation",
            )
            return _Failure(missing, step.input, 1), logs
        try:
            resolved = _resolve_input(step.input, scope, operation)
        except SealflowError as bad_reference:
            return _Failure(bad_reference, step.input, 1), logs
        timeout, limit_name = self._timeout(step, connector, operation.default_timeout_s)
        attempt = 0
        while True:
            attempt += 1
            ctx = RunStepContext(
                account_id=run.row.account_id,
                execution_id=run.row.id,
                step_name=step.name,
                timeout_s=timeout,
                clock=self.clock,
                scope=scope,
                logs=logs,
                http=self.http,
                call_workflow=lambda wf, payload, wait: self._call(run, wf, payload, wait),
                respond=lambda status, body, headers: self._respond(run, status, body, headers),
            )
            call = StepCall(
                region=run.cell.region,
                account_id=run.row.account_id,
                execution_id=run.row.id,
                path=path,
                step=step,
                operation=operation,
                input=resolved,
                attempt=attempt,
                ctx=ctx,
            )
            err: SealflowError
            try:
                # A little grace, so a connector's own deadline error (clearer) wins the race.
                async with asyncio.timeout(timeout + TIMEOUT_GRACE_S):
                    output = await self.chain(call)
                return _Success(resolved, output, attempt), logs
            except TimeoutError:
                err = _timed_out(limit_name, timeout, f"step {step.name} did not finish in time")
            except SealflowError as exc:
                # A connector's own deadline error: say which limit set the deadline.
                err = _timed_out(limit_name, timeout, exc.message) if exc.code == "timeout" else exc
            except Exception as exc:
                err = ConnectorError(
                    f"connector {step.connector} failed unexpectedly ({type(exc).__name__})",
                    code="connector_crashed",
                )
            if not step.retry.should_retry(attempt, err.retryable):
                return _Failure(err, resolved, attempt), logs
            delay = step.retry.delay(
                attempt, rng=self.rng, retry_after=getattr(err, "retry_after", None)
            )
            ctx.log(f"attempt {attempt} failed ({err.code}); retrying in {delay:.2f}s")
            await self.clock.sleep(delay)

    def _timeout(
        self, step: Step, connector: Connector, default: float | None
    ) -> tuple[float, str]:
        """The step's timeout and the limit that caps it (connectors may name another limit
        than connector_timeout_s: http's http_timeout_max_s, delay's wall time)."""
        limit_name = str(connector.extra.get("timeout_limit", "connector_timeout_s"))
        cap = float(getattr(self.limits, limit_name))
        wanted = step.timeout or default or self.limits.connector_timeout_s
        if wanted >= cap:
            return cap, limit_name
        return wanted, "step timeout" if step.timeout else limit_name

    def _record(
        self,
        run: _Run,
        step: Step,
        path: str,
        status: str,
        *,
        input_: Any,
        output: Any = None,
        error: dict[str, Any] | None = None,
        logs: list[dict[str, Any]],
        attempts: int,
        started: datetime,
        t0: float,
        nxt: str | None,
    ) -> None:
        """Write a finished step (the lease is checked and extended in the same write)."""
        run.seq += 1
        run.steps_run += 1
        now = self.clock.now()
        record = records.StepRecord(
            path=path,
            name=step.name,
            connector=step.connector,
            operation=step.operation,
            status=status,
            input=input_,
            output=output,
            error=error,
            logs=logs,
            attempts=attempts,
            duration_ms=round((self.clock.monotonic() - t0) * 1000, 3),
            started_at=started,
            finished_at=now,
            next_step=nxt,
        )
        lease_until = records.lease_deadline(now, self.lease_s)
        if nxt is None and path == step.name:
            # The execution ends here: this record is written with the end (_finish), in
            # the same transaction.
            run.deferred = (run.seq, record, lease_until)
            return
        response, run.pending_response = run.pending_response, None
        with run.cell.write() as conn:
            records.record_step(
                conn,
                execution_id=run.row.id,
                account_id=run.row.account_id,
                owner=run.owner,
                seq=run.seq,
                record=record,
                lease_until=lease_until,
                response=response,
            )
        if response is not None:
            self.hub.publish(run.row.id, response)

    def _flush_deferred(self, run: _Run, conn: Any) -> bool:
        """Write the deferred last-step record in the caller's transaction; the caller
        counts the step on the execution row."""
        if run.deferred is None:
            return False
        seq, record, _until = run.deferred
        run.deferred = None
        records.insert_step(
            conn, execution_id=run.row.id, account_id=run.row.account_id, seq=seq, record=record
        )
        return True

    # ----------------------------------------------------------------- capabilities
    async def _respond(self, run: _Run, status: int, body: Any, headers: Mapping[str, str]) -> None:
        if run.response_sent:
            raise ConnectorError(
                "this execution has already answered its webhook", code="already_responded"
            )
        # Written with this step's record (one transaction), published after its commit.
        run.pending_response = {"status": status, "headers": dict(headers), "body": body}
        run.response_sent = True

    async def _call(self, run: _Run, workflow_id: str, payload: Any, wait: bool) -> Any:
        """call_workflow: the callee must have a callable trigger and belong to the same
        account. With wait, it runs inline in this worker (no pool slot needed, so a full
        pool cannot deadlock); without, it is queued."""
        depth = run.row.call_depth + 1
        self.limits.check("max_call_depth", depth, "nested workflow calls")
        now = self.clock.now()
        with run.cell.write() as conn:
            wf = workflow_for_run(conn, run.row.account_id, workflow_id)
            if wf.trigger_type != "callable":
                raise ConnectorError(
                    f"workflow {workflow_id} has a {wf.trigger_type} trigger; only workflows "
                    "with a callable trigger can be called",
                    code="not_callable",
                )
            child = insert_execution(
                conn,
                self.clock,
                region=run.cell.region,
                account_id=run.row.account_id,
                workflow_id=workflow_id,
                version=wf.current_version,
                trigger_type="callable",
                payload={"body": payload, "headers": {}, "query": {}},
                parent_id=run.row.id,
                call_depth=depth,
                lease_owner=run.owner if wait else None,
                lease_expires_at=records.lease_deadline(now, self.lease_s) if wait else None,
            )
        if not wait:
            self.dispatch(run.cell.region, child.id)
            return {"execution_id": child.id}
        status = await self.run(run.cell.region, child.id, run.owner)
        with run.cell.read() as conn:
            row = records.load_execution(conn, child.id)
        if status != Status.SUCCEEDED:
            error = codec.loads(row.error) or {}
            raise ConnectorError(
                f"called workflow {workflow_id} {status or row.status}: "
                f"{error.get('message', 'no result')}",
                code="call_failed",
                details={"execution_id": child.id},
            )
        return codec.loads(row.result)  # the child links back through parent_id


TIMEOUT_GRACE_S = 1.0


def _timed_out(limit_name: str, timeout: float, message: str) -> LimitExceeded:
    err = LimitExceeded(limit_name, timeout, message)
    err.code, err.retryable = "timeout", True  # a slow third party may be faster next time
    return err


_EXPRESSION_FIELDS: dict[int, frozenset[str]] = {}


def _expression_fields(operation: Operation) -> frozenset[str]:
    """Input fields holding JSONata (schema annotation x-sealflow-jsonata): the connector
    evaluates them against the context, so references inside are not resolved first."""
    found = _EXPRESSION_FIELDS.get(id(operation.input_schema))
    if found is None:
        props = operation.input_schema.get("properties", {})
        found = frozenset(
            k for k, v in props.items() if isinstance(v, dict) and v.get("x-sealflow-jsonata")
        )
        _EXPRESSION_FIELDS[id(operation.input_schema)] = found
    return found


def _resolve_input(value: Any, scope: dict[str, Any], operation: Operation) -> Any:
    raw = _expression_fields(operation)
    if not raw or not isinstance(value, dict):
        return resolve(value, scope)
    kept = {k: v for k, v in value.items() if k in raw}
    out = resolve({k: v for k, v in value.items() if k not in raw}, scope)
    out.update(kept)
    return out


@dataclass
class _Success:
    input: Any
    output: Any
    attempts: int


@dataclass
class _Failure:
    error: SealflowError
    input: Any
    attempts: int
