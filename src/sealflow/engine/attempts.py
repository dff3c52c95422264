"""One step, as the runner asks for it: resolve its input, find its timeout and the limit
behind it, and run its attempts under the retry policy, each through the interceptor chain.
Errors come back as data (Failure), never raised: the runner decides what a failure means
for the execution (stop, continue, error branch)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sealflow.clock import Clock
from sealflow.connectors.base import Connector, Operation
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.core.errors import ConnectorError, LimitExceeded, SealflowError
from sealflow.core.expressions import resolve
from sealflow.core.limits import Limits
from sealflow.core.workflows import Step
from sealflow.engine.context import RunStepContext
from sealflow.engine.interceptors import Chain, StepCall
from sealflow.redaction.redactor import Redactor

# A connector's own deadline error is clearer than ours: give it a moment to win the race.
TIMEOUT_GRACE_S = 1.0


@dataclass
class Success:
    input: Any
    output: Any
    attempts: int


@dataclass
class Failure:
    error: SealflowError
    input: Any
    attempts: int


@dataclass(frozen=True)
class Where:
    """Which execution a step runs for."""

    region: str
    account_id: str
    execution_id: str
    path: str
    redactor: Redactor | None = None  # the execution's (S5)


# (step, timeout, scope, logs) -> the context a connector gets for one attempt
ContextFactory = Callable[[Step, float, dict[str, Any], list[dict[str, Any]]], RunStepContext]


class StepAttempts:
    def __init__(
        self,
        *,
        registry: ConnectorRegistry,
        chain: Chain,
        limits: Limits,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.registry = registry
        self.chain = chain
        self.limits = limits
        self.clock = clock
        self.rng = rng

    async def run(
        self, step: Step, scope: dict[str, Any], where: Where, make_ctx: ContextFactory
    ) -> tuple[Success | Failure, list[dict[str, Any]]]:
        logs: list[dict[str, Any]] = []
        connector = self.registry.get(step.connector)
        operation = connector.operation(step.operation)
        if operation is None:  # validation prevents this; a removed plugin can cause it
            missing = ConnectorError(
                f"connector {step.connector} has no operation {step.operation}",
                code="unknown_operation",
            )
            return Failure(missing, step.input, 1), logs
        try:
            resolved = resolve_input(step.input, scope, operation)
        except SealflowError as bad_reference:
            return Failure(bad_reference, step.input, 1), logs
        timeout, limit_name = self.timeout(step, connector, operation.default_timeout_s)
        attempt = 0
        while True:
            attempt += 1
            ctx = make_ctx(step, timeout, scope, logs)
            call = StepCall(
                region=where.region,
                account_id=where.account_id,
                execution_id=where.execution_id,
                path=where.path,
                step=step,
                operation=operation,
                input=resolved,
                attempt=attempt,
                ctx=ctx,
                auth_types=connector.auth_types,
                redactor=where.redactor,
            )
            err: SealflowError
            try:
                async with asyncio.timeout(timeout + TIMEOUT_GRACE_S):
                    output = await self.chain(call)
                return Success(resolved, output, attempt), logs
            except TimeoutError:
                err = timed_out(limit_name, timeout, f"step {step.name} did not finish in time")
            except SealflowError as exc:
                # A connector's own deadline error: say which limit set the deadline.
                err = timed_out(limit_name, timeout, exc.message) if exc.code == "timeout" else exc
            except Exception as exc:  # a connector bug must not kill the worker
                err = ConnectorError(
                    f"connector {step.connector} failed unexpectedly ({type(exc).__name__})",
                    code="connector_crashed",
                )
            if not step.retry.should_retry(attempt, err.retryable):
                return Failure(err, resolved, attempt), logs
            delay = step.retry.delay(
                attempt, rng=self.rng, retry_after=getattr(err, "retry_after", None)
            )
            ctx.log(f"attempt {attempt} failed ({err.code}); retrying in {delay:.2f}s")
            await self.clock.sleep(delay)

    def timeout(self, step: Step, connector: Connector, default: float | None) -> tuple[float, str]:
        """The step's timeout and the limit that caps it (connectors may name another limit
        than connector_timeout_s: http's http_timeout_max_s, delay's wall time)."""
        limit_name = str(connector.extra.get("timeout_limit", "connector_timeout_s"))
        cap = float(getattr(self.limits, limit_name))
        wanted = step.timeout or default or self.limits.connector_timeout_s
        if wanted >= cap:
            return cap, limit_name
        return wanted, "step timeout" if step.timeout else limit_name


def timed_out(limit_name: str, timeout: float, message: str) -> LimitExceeded:
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


def resolve_input(value: Any, scope: dict[str, Any], operation: Operation) -> Any:
    raw = _expression_fields(operation)
    if not raw or not isinstance(value, dict):
        return resolve(value, scope)
    kept = {k: v for k, v in value.items() if k in raw}
    out = resolve({k: v for k, v in value.items() if k not in raw}, scope)
    out.update(kept)
    return out
