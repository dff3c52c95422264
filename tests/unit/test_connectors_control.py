"""The control connectors: what each handler returns or raises, and what it asks of the
engine (through a test double of StepContext, the outer seam)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sealflow.connectors import control
from sealflow.connectors.transform import evaluate_jsonata
from sealflow.core.errors import ConnectorError, LimitExceeded
from sealflow.core.scheduler import case_key

CONTEXT = {"trigger": {"body": {"kind": "order", "n": 3, "flag": True}},
           "steps": {"fetch": {"status": 200, "body": {"items": []}}}}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class FakeContext:
    account_id: str = "acc_1"
    execution_id: str = "exe_1"
    step_name: str = "step"
    credential: None = None
    timeout_s: float = 45.0
    slept: list[float] = field(default_factory=list)
    responses: list[tuple[int, Any, Mapping[str, str]]] = field(default_factory=list)
    calls: list[tuple[str, Any, bool]] = field(default_factory=list)
    call_returns: Any = None

    def log(self, message: str, **fields: Any) -> None:
        pass

    def evaluate(self, expression: str) -> Any:
        return evaluate_jsonata(expression, CONTEXT)

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)

    async def respond(self, status: int, body: Any, headers: Mapping[str, str]) -> None:
        self.responses.append((status, body, headers))

    async def call_workflow(self, workflow_id: str, payload: Any, *, wait: bool) -> Any:
        self.calls.append((workflow_id, payload, wait))
        return self.call_returns


FACTORIES = {
    "branch": control.branch, "switch": control.switch, "loop": control.loop,
    "delay": control.delay, "respond": control.respond,
    "call_workflow": control.call_workflow, "raise_error": control.raise_error,
}


async def run(name: str, input: dict[str, Any], ctx: FakeContext | None = None) -> Any:
    """Validate the input against the operation's schema, as the engine does, then run."""
    op = FACTORIES[name]().operation(None)
    assert op is not None
    errors = list(Draft202012Validator(op.input_schema).iter_errors(input))
    assert not errors, errors[0].message
    out = await op.handler(input, ctx or FakeContext())  # type: ignore[arg-type]
    Draft202012Validator(op.output_schema).validate(out)
    return out


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_connector_is_well_formed(name: str) -> None:
    conn = FACTORIES[name]()
    assert conn.name == name and len(conn.operations) == 1 and conn.auth_types == ()
    for op in conn.operations.values():
        Draft202012Validator.check_schema(op.input_schema)
        Draft202012Validator.check_schema(op.output_schema)
    assert conn.control == (name if name in ("branch", "switch", "loop") else None)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("condition", "expected"),
    [("$.steps.fetch.status = 200", True), ("$.steps.fetch.status = 404", False),
     ("$.steps.fetch.body.items", False), ("$.trigger.body.kind", True),
     ("$.nothing", False), (True, True), (False, False)],
)
async def test_branch(condition: Any, expected: bool) -> None:
    assert await run("branch", {"condition": condition}) == {"result": expected}


@pytest.mark.anyio
async def test_branch_bad_expression_is_an_expression_error() -> None:
    with pytest.raises(ConnectorError) as caught:
        await run("branch", {"condition": "$.a = "})
    assert caught.value.code == "expression_error"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("input", "case"),
    [({"value": "order"}, "order"), ({"value": 3}, "3"), ({"value": True}, "true"),
     ({"value": None}, "null"), ({"expression": "$.trigger.body.kind"}, "order"),
     ({"expression": "$.trigger.body.n * 2"}, "6"),
     ({"value": "order", "cases": ["order", "refund"]}, "order"),
     ({"value": "other", "cases": ["order", "refund"]}, None)],
)
async def test_switch(input: dict[str, Any], case: str | None) -> None:
    out = await run("switch", input)
    assert out["case"] == case
    # The scheduler matches output["value"] by its own text form: the two must agree.
    if case is not None:
        assert case_key(out["value"]) == case


def test_switch_needs_value_or_expression() -> None:
    op = control.switch().operation(None)
    assert op is not None
    validator = Draft202012Validator(op.input_schema)
    assert not validator.is_valid({})
    assert not validator.is_valid({"value": 1, "expression": "1"})


@pytest.mark.anyio
async def test_loop_returns_items_within_the_bound() -> None:
    out = await run("loop", {"items": [1, 2, 3], "max_iterations": 3})
    assert out == {"items": [1, 2, 3], "count": 3}
    assert await run("loop", {"items": []}) == {"items": [], "count": 0}


@pytest.mark.anyio
async def test_loop_over_the_bound_names_the_limit() -> None:
    with pytest.raises(LimitExceeded) as caught:
        await run("loop", {"items": list(range(5)), "max_iterations": 4},
                  FakeContext(step_name="each_line"))
    assert caught.value.limit == "max_loop_iterations" and caught.value.limit_value == 4
    assert "each_line" in str(caught.value) and "5 items" in str(caught.value)


@pytest.mark.anyio
async def test_delay_uses_the_engine_clock() -> None:
    ctx = FakeContext()
    assert await run("delay", {"seconds": 2.5}, ctx) == {"waited_s": 2.5}
    assert ctx.slept == [2.5]
    op = control.delay().operation(None)
    assert op is not None and not Draft202012Validator(op.input_schema).is_valid(
        {"seconds": 3601})


@pytest.mark.anyio
async def test_respond() -> None:
    ctx = FakeContext()
    out = await run("respond", {"status": 201, "body": {"ok": True},
                                "headers": {"X-Handled-By": "sealflow"}}, ctx)
    assert out == {"status": 201}
    assert ctx.responses == [(201, {"ok": True}, {"X-Handled-By": "sealflow"})]
    ctx = FakeContext()
    assert await run("respond", {}, ctx) == {"status": 200}
    assert ctx.responses == [(200, None, {})]


@pytest.mark.anyio
async def test_call_workflow_waiting_and_not() -> None:
    ctx = FakeContext(call_returns={"total": 3})
    out = await run("call_workflow", {"workflow_id": "wf_1", "input": {"user": 1}}, ctx)
    assert out == {"result": {"total": 3}} and ctx.calls == [("wf_1", {"user": 1}, True)]
    ctx = FakeContext(call_returns="exe_9")
    out = await run("call_workflow", {"workflow_id": "wf_1", "wait": False}, ctx)
    assert out == {"execution_id": "exe_9"} and ctx.calls == [("wf_1", None, False)]
    ctx = FakeContext(call_returns={"execution_id": "exe_10"})
    out = await run("call_workflow", {"workflow_id": "wf_1", "wait": False}, ctx)
    assert out == {"execution_id": "exe_10"}


@pytest.mark.anyio
async def test_raise_error() -> None:
    with pytest.raises(ConnectorError) as caught:
        await run("raise_error", {"message": "user not found", "code": "not_found"})
    assert (caught.value.code, caught.value.message, caught.value.retryable) == (
        "not_found", "user not found", False)
    with pytest.raises(ConnectorError) as caught:
        await run("raise_error", {"message": "boom"})
    assert caught.value.code == "raised"
    op = control.raise_error().operation(None)
    assert op is not None
    assert not Draft202012Validator(op.input_schema).is_valid({"message": "x", "code": "Bad!"})
