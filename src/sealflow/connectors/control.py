"""Built-in control connectors: branch, switch, loop, delay, respond, call_workflow,
raise_error. Each factory below is an entry point of the `sealflow.connectors` group.

The handlers decide; the engine moves. What the engine does with each output:

* branch (control="branch"): input {condition: JSONata string | boolean}. A string is
  evaluated with ctx.evaluate and cast with JSONata's $boolean rules; output
  {result: bool}. The engine follows `then` when result is true, else `else`.
* switch (control="switch"): input {value: any} (a `$.…` reference, resolved by the engine
  before the call) or {expression: JSONata string}; optional {cases: [keys]} which the
  engine may pass with the step's `cases` keys. Output {value: any, case: string | null}:
  `value` is what core.scheduler.successor matches (its case_key text form: strings as
  they are, anything else compact JSON) against the step's `cases`, else `default`; `case`
  is that text form for the Debug view, null when `cases` was given and lacks it.
* loop (control="loop"): input {items: array, max_iterations?: int}. The handler only
  checks the bound (LimitExceeded("max_loop_iterations", …) above max_iterations) and
  returns {items, count}; the engine runs the body once per item with $.item/$.index and
  must also enforce its own Limits.max_loop_iterations.
* delay: waits with ctx.sleep (the engine's clock); output {waited_s}.
* respond: calls ctx.respond(status, body, headers) once; output {status}.
* call_workflow: ctx.call_workflow(workflow_id, input, wait=…). With wait the engine
  returns the child's result: output {result}. Without, it returns the child's execution
  id (a string, or a mapping with "execution_id"): output {execution_id}.
* raise_error: raises ConnectorError(code, message, retryable=False); never outputs.

Connector.extra["timeout_limit"] names the limit that caps a step's timeout when it is
not the usual connector_timeout_s (delay and waiting calls outlive 45 s by design).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sealflow.connectors.base import Connector, Operation, StepContext
from sealflow.connectors.transform import EXPRESSION_SCHEMA, jsonata_truthy
from sealflow.core.errors import ConnectorError, LimitExceeded
from sealflow.core.scheduler import case_key

SCHEMA = "https://json-schema.org/draft/2020-12/schema"
MAX_DELAY_S = 3600
CODE_PATTERN = "^[a-z][a-z0-9_]{0,63}$"


def _object(
    properties: Mapping[str, Any], required: tuple[str, ...] = (), **more: Any
) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
        **more,
    }


def _single(name: str, description: str, operation: Operation, *, control: str | None = None,
            extra: Mapping[str, Any] | None = None) -> Connector:
    return Connector(
        name=name,
        description=description,
        operations={operation.name: operation},
        control=control,
        extra=dict(extra or {}),
    )


# ---- branch ---------------------------------------------------------------------------

async def _branch(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    condition = input["condition"]
    if isinstance(condition, bool):
        return {"result": condition}
    return {"result": jsonata_truthy(ctx.evaluate(condition))}


def branch() -> Connector:
    return _single("branch", "Go one way or the other on a condition.", Operation(
        name="evaluate",
        description="Evaluate a JSONata condition (or take a boolean) as true/false.",
        input_schema=_object(
            {"condition": {"oneOf": [EXPRESSION_SCHEMA, {"type": "boolean"}]}}, ("condition",)
        ),
        output_schema=_object({"result": {"type": "boolean"}}, ("result",)),
        handler=_branch,
    ), control="branch")


# ---- switch ---------------------------------------------------------------------------

async def _switch(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    if "expression" in input:
        value = ctx.evaluate(input["expression"])
    else:
        value = input.get("value")
    case: str | None = case_key(value)
    cases = input.get("cases")
    if cases is not None and case not in cases:
        case = None
    return {"case": case, "value": value}


def switch() -> Connector:
    return _single("switch", "Pick one of several paths by a value.", Operation(
        name="evaluate",
        description="Match a value (or a JSONata expression's value) against case keys.",
        input_schema=_object(
            {
                "value": {"description": "the value to match; usually a $.… reference"},
                "expression": EXPRESSION_SCHEMA,
                "cases": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            },
            oneOf=[{"required": ["value"]}, {"required": ["expression"]}],
        ),
        output_schema=_object(
            {"case": {"type": ["string", "null"]}, "value": {}}, ("case", "value")
        ),
        handler=_switch,
    ), control="switch")


# ---- loop -----------------------------------------------------------------------------

async def _loop(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    items = input["items"]
    if not isinstance(items, list):
        raise ConnectorError(
            f"loop items must be a list, got {type(items).__name__}", code="invalid_input"
        )
    bound = input.get("max_iterations")
    if bound is not None and len(items) > bound:
        raise LimitExceeded(
            "max_loop_iterations", bound,
            f"loop step {ctx.step_name!r} got {len(items)} items, more than max_iterations",
        )
    return {"items": items, "count": len(items)}


def loop() -> Connector:
    return _single("loop", "Run the loop body once for each item of a list (bounded).", Operation(
        name="for_each",
        description="Check the list against its bound; the engine runs the body per item.",
        input_schema=_object(
            {"items": {"type": "array"}, "max_iterations": {"type": "integer", "minimum": 1}},
            ("items",),
        ),
        output_schema=_object(
            {"items": {"type": "array"}, "count": {"type": "integer", "minimum": 0}},
            ("items", "count"),
        ),
        handler=_loop,
    ), control="loop")


# ---- delay ----------------------------------------------------------------------------

async def _delay(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    seconds = float(input["seconds"])
    if not 0 <= seconds <= MAX_DELAY_S:
        raise ConnectorError(f"delay must be 0..{MAX_DELAY_S} seconds", code="invalid_input")
    await ctx.sleep(seconds)
    return {"waited_s": seconds}


def delay() -> Connector:
    return _single("delay", "Wait before the next step.", Operation(
        name="wait",
        description=f"Wait 0..{MAX_DELAY_S} seconds on the engine's clock.",
        input_schema=_object(
            {"seconds": {"type": "number", "minimum": 0, "maximum": MAX_DELAY_S}}, ("seconds",)
        ),
        output_schema=_object({"waited_s": {"type": "number", "minimum": 0}}, ("waited_s",)),
        handler=_delay,
        default_timeout_s=MAX_DELAY_S + 60,
    ), extra={"timeout_limit": "execution_wall_time_s"})


# ---- respond --------------------------------------------------------------------------

async def _respond(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    status = int(input.get("status", 200))
    await ctx.respond(status, input.get("body"), dict(input.get("headers") or {}))
    return {"status": status}


def respond() -> Connector:
    return _single("respond", "Answer the webhook that started this execution.", Operation(
        name="respond",
        description="Send the webhook reply (trigger respond: wait).",
        input_schema=_object({
            "status": {"type": "integer", "minimum": 100, "maximum": 599, "default": 200},
            "body": {"description": "any JSON value; sent as JSON"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        }),
        output_schema=_object({"status": {"type": "integer"}}, ("status",)),
        handler=_respond,
    ))


# ---- call_workflow --------------------------------------------------------------------

async def _call_workflow(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    wait = bool(input.get("wait", True))
    returned = await ctx.call_workflow(input["workflow_id"], input.get("input"), wait=wait)
    if wait:
        return {"result": returned}
    if isinstance(returned, Mapping):
        returned = returned.get("execution_id")
    if returned is None:
        raise ConnectorError("the called workflow returned no execution id", code="call_failed")
    return {"execution_id": str(returned)}


def call_workflow() -> Connector:
    return _single("call_workflow", "Run another workflow of the same account.", Operation(
        name="call",
        description="Start a workflow; with wait, its result is this step's output.",
        input_schema=_object({
            "workflow_id": {"type": "string", "minLength": 1, "maxLength": 200},
            "input": {"description": "the called workflow's trigger body"},
            "wait": {"type": "boolean", "default": True},
        }, ("workflow_id",)),
        output_schema={
            "$schema": SCHEMA,
            "oneOf": [
                _object({"result": {}}, ("result",)),
                _object({"execution_id": {"type": "string"}}, ("execution_id",)),
            ],
        },
        handler=_call_workflow,
    ), extra={"timeout_limit": "execution_wall_time_s"})


# ---- raise_error ----------------------------------------------------------------------

async def _raise_error(input: dict[str, Any], ctx: StepContext) -> Any:
    raise ConnectorError(
        str(input["message"]), code=str(input.get("code", "raised")), retryable=False
    )


def raise_error() -> Connector:
    return _single("raise_error", "Fail the step on purpose.", Operation(
        name="raise",
        description="Fail with a message and code (never retried).",
        input_schema=_object({
            "message": {"type": "string", "minLength": 1, "maxLength": 2000},
            "code": {"type": "string", "pattern": CODE_PATTERN, "default": "raised"},
        }, ("message",)),
        output_schema={"$schema": SCHEMA, "not": {}, "description": "never returns"},
        handler=_raise_error,
    ))
