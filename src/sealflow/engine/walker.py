"""Walks an execution's graph: runs each step (engine.attempts), follows its edges, runs
loop bodies, records every step before the next starts, and gives connectors the engine's
capabilities (respond to the webhook, call another workflow)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

import httpx

from sealflow.clock import Clock
from sealflow.core.errors import ConnectorError, LimitExceeded
from sealflow.core.executions import Status
from sealflow.core.limits import Limits
from sealflow.core.scheduler import successor
from sealflow.core.workflows import Graph, Step
from sealflow.db.sealed import open_, step_row_id
from sealflow.engine import records
from sealflow.engine.attempts import Failure, StepAttempts, Success, Where
from sealflow.engine.context import RunStepContext
from sealflow.engine.notify import ResponseHub
from sealflow.engine.state import RunState, Stop, error_record
from sealflow.monitoring.metrics import metrics
from sealflow.services.executions import insert_execution, workflow_for_run
from sealflow.services.storage import ScopedStorage

# Runs a child execution inline (call_workflow with wait): Runner.run.
RunChild = Callable[[str, str, str], Awaitable[Status | None]]


class GraphWalker:
    def __init__(
        self,
        *,
        attempts: StepAttempts,
        limits: Limits,
        clock: Clock,
        hub: ResponseHub,
        http: Callable[[], httpx.AsyncClient],
        lease_s: float,
        dispatch: Callable[[str, str], None],
        run_child: RunChild,
    ) -> None:
        self.attempts = attempts
        self.limits = limits
        self.clock = clock
        self.hub = hub
        self.http = http
        self.lease_s = lease_s
        self.dispatch = dispatch  # wakes a worker for a queued execution (fire-and-forget)
        self.run_child = run_child

    async def walk(self, run: RunState, graph: Graph, scope: dict[str, Any], prefix: str) -> Any:
        name = graph.start
        last: Any = None
        while name is not None:
            step = graph.steps[name]
            path = prefix + name
            done = run.steps_done.get(path)
            if done is not None:  # recorded before a restart: reuse, never run again
                row_id = step_row_id(run.row.id, path)
                vault, account = run.cell.vault, run.row.account_id
                output = open_(vault, account, "step_runs", row_id, "output", done.output)
                if done.status == "failed":
                    error = open_(vault, account, "step_runs", row_id, "error", done.error)
                    output = {"error": error}
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

    def _check_limits(self, run: RunState) -> None:
        self.limits.check(
            "max_steps_per_execution", run.steps_run + 1, "steps run in this execution"
        )

    async def _loop(
        self, run: RunState, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[Any, str | None]:
        assert step.body is not None
        started, t0 = self.clock.now(), self.clock.monotonic()
        header, logs = await self._attempt(run, step, scope, path)
        if isinstance(header, Failure):
            return self._failed(run, step, path, header, started, t0, logs)
        items = header.output["items"]
        try:
            self.limits.check("max_loop_iterations", len(items), f"loop {step.name} items")
        except LimitExceeded as err:
            return self._failed(run, step, path, Failure(err, header.input, 1), started, t0, logs)
        results = []
        for index, item in enumerate(items):
            body_scope = {
                "trigger": scope["trigger"],
                "steps": dict(scope["steps"]),
                "item": item,
                "index": index,
            }
            results.append(await self.walk(run, step.body, body_scope, f"{path}[{index}]."))
        output = {"results": results, "count": len(results)}
        return self._succeeded(run, step, path, header, output, started, t0, logs)

    async def _step(
        self, run: RunState, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[Any, str | None]:
        started, t0 = self.clock.now(), self.clock.monotonic()
        outcome, logs = await self._attempt(run, step, scope, path)
        if isinstance(outcome, Failure):
            return self._failed(run, step, path, outcome, started, t0, logs)
        return self._succeeded(run, step, path, outcome, outcome.output, started, t0, logs)

    def _succeeded(
        self,
        run: RunState,
        step: Step,
        path: str,
        outcome: Success,
        output: Any,
        started: datetime,
        t0: float,
        logs: list[dict[str, Any]],
    ) -> tuple[Any, str | None]:
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
        run: RunState,
        step: Step,
        path: str,
        failure: Failure,
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
            raise Stop(error)
        return {"error": error}, nxt

    async def _attempt(
        self, run: RunState, step: Step, scope: dict[str, Any], path: str
    ) -> tuple[Success | Failure, list[dict[str, Any]]]:
        def make_ctx(
            step: Step, timeout: float, scope: dict[str, Any], logs: list[dict[str, Any]]
        ) -> RunStepContext:
            return RunStepContext(
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
                storage=storage,
            )

        storage = ScopedStorage(
            run.cell,
            self.clock,
            self.limits,
            account_id=run.row.account_id,
            workflow_id=run.row.workflow_id,
            execution_id=run.row.id,
        )

        where = Where(run.cell.region, run.row.account_id, run.row.id, path, run.redactor)
        return await self.attempts.run(step, scope, where, make_ctx)

    def _record(
        self,
        run: RunState,
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
        elapsed = self.clock.monotonic() - t0
        metrics().step_seconds.labels(step.connector).observe(elapsed)
        # What is recorded is redacted (S5); the scope the next steps read keeps the values.
        redact = run.redactor.value
        input_, output, error, logs = redact(input_), redact(output), redact(error), redact(logs)
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
            duration_ms=round(elapsed * 1000, 3),
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
                run.cell.vault,
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

    def flush_deferred(self, run: RunState, conn: Any) -> bool:
        """Write the deferred last-step record in the caller's transaction; the caller
        counts the step on the execution row."""
        if run.deferred is None:
            return False
        seq, record, _until = run.deferred
        run.deferred = None
        records.insert_step(
            conn,
            run.cell.vault,
            execution_id=run.row.id,
            account_id=run.row.account_id,
            seq=seq,
            record=record,
        )
        return True

    # ----------------------------------------------------------------- capabilities
    async def _respond(
        self, run: RunState, status: int, body: Any, headers: Mapping[str, str]
    ) -> None:
        if run.response_sent:
            raise ConnectorError(
                "this execution has already answered its webhook", code="already_responded"
            )
        # Written with this step's record (one transaction), published after its commit.
        run.pending_response = run.redactor.value(
            {"status": status, "headers": dict(headers), "body": body})
        run.response_sent = True

    async def _call(self, run: RunState, workflow_id: str, payload: Any, wait: bool) -> Any:
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
                run.cell.vault,
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
        status = await self.run_child(run.cell.region, child.id, run.owner)
        with run.cell.read() as conn:
            row = records.load_execution(conn, child.id)
        if status != Status.SUCCEEDED:
            error = open_(
                run.cell.vault, row.account_id, "executions", row.id, "error", row.error
            ) or {}
            raise ConnectorError(
                f"called workflow {workflow_id} {status or row.status}: "
                f"{error.get('message', 'no result')}",
                code="call_failed",
                details={"execution_id": child.id},
            )
        # the child links back through parent_id
        return open_(run.cell.vault, row.account_id, "executions", row.id, "result", row.result)
