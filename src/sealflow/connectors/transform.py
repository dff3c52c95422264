"""The transform connector and the one JSONata entry point (SPEC W4: a safe expression
language, never Python `eval`).

`evaluate_jsonata(expression, context)` is what the engine calls to implement
`ctx.evaluate`; the transform connector, branch and switch only go through `ctx.evaluate`.

Why the dance around jsonata-python: a compiled `Jsonata` object keeps evaluation state on
itself (current input, environment, timestamp for `$now()`), and evaluates through a
thread-local "current instance" that is whichever expression was last *constructed* on the
thread. So the parse is cached, but each evaluation runs on a shallow copy installed as the
thread's current instance, with variables and runtime bounds in a fresh frame. Its runtime
bounds are also measured from when they are created, so they are created per evaluation.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from jsonata import JException, Jsonata

from sealflow.connectors.base import Connector, Operation, StepContext
from sealflow.core.errors import ConnectorError

SCHEMA = "https://json-schema.org/draft/2020-12/schema"
# Runaway protection: wall time per evaluation and eval-apply depth (recursion). The depth
# bound also keeps Python's own recursion limit out of reach.
DEFAULT_TIMEOUT_MS = 2_000
DEFAULT_MAX_DEPTH = 500
MAX_EXPRESSION_CHARS = 20_000


def _expression_error(exc: Exception, what: str) -> ConnectorError:
    if isinstance(exc, JException):
        position = exc.location if isinstance(exc.location, int) and exc.location >= 0 else None
        where = f" at position {position}" if position is not None else ""
        return ConnectorError(
            f"JSONata {what} error {exc.error}{where}: {exc}",
            code="expression_error",
            details={"jsonata_code": exc.error, "position": position},
        )
    if isinstance(exc, RecursionError):
        return ConnectorError(
            f"JSONata {what} error: expression nests too deeply", code="expression_error"
        )
    return ConnectorError(f"JSONata {what} error: {exc}", code="expression_error")


@functools.lru_cache(maxsize=1024)
def _parse(expression: str) -> Jsonata:
    return Jsonata(expression)


def compile_jsonata(expression: str) -> Jsonata:
    """Parse (cached); raises ConnectorError(code="expression_error") with the position.
    Usable on save to check an expression without evaluating it."""
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ConnectorError(
            f"JSONata expression is {len(expression)} characters, over {MAX_EXPRESSION_CHARS}",
            code="expression_error",
        )
    try:
        return _parse(expression)
    except Exception as exc:
        raise _expression_error(exc, "syntax") from None


def _to_json(value: Any) -> Any:
    """JSONata results as plain JSON values (its sequences are list subclasses; a function
    is not data)."""
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise ConnectorError(
        "JSONata expression evaluates to a function or another non-JSON value",
        code="expression_error",
    )


def evaluate_jsonata(
    expression: str,
    context: Any,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Evaluate `expression` against `context` (the engine passes {trigger, steps, item,
    index}). Undefined results are None. Errors: ConnectorError(code="expression_error",
    retryable=False) naming the JSONata error code and position."""
    compiled = compile_jsonata(expression)
    instance = copy.copy(compiled)
    bounds = Jsonata.Frame(None)
    bounds.set_runtime_bounds(timeout_ms, max_depth)
    previous = getattr(Jsonata.CURRENT, "jsonata", None)
    Jsonata.CURRENT.jsonata = instance
    try:
        result = instance.evaluate(context, bounds)
    except Exception as exc:  # the library raises JException and, on bugs, plain errors
        raise _expression_error(exc, "evaluation") from None
    finally:
        Jsonata.CURRENT.jsonata = previous
    return _to_json(result)


def jsonata_truthy(value: Any) -> bool:
    """JSONata's boolean cast ($boolean): empty string, 0, null, empty array/object and
    arrays of only falsy members are false."""
    return bool(Jsonata.boolize(value))


EXPRESSION_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_EXPRESSION_CHARS,
    # Annotation for the engine: JSONata source, evaluated by ctx.evaluate; do not resolve
    # `$.…` references inside it.
    "x-sealflow-jsonata": True,
}

INPUT_SCHEMA = {
    "$schema": SCHEMA,
    "type": "object",
    "properties": {
        "expression": {
            **EXPRESSION_SCHEMA,
            "description": "JSONata over {trigger, steps, item, index}",
        }
    },
    "required": ["expression"],
    "additionalProperties": False,
}
OUTPUT_SCHEMA = {"$schema": SCHEMA, "description": "whatever the expression evaluates to"}


async def _evaluate(input: dict[str, Any], ctx: StepContext) -> Any:
    return ctx.evaluate(input["expression"])


def connector() -> Connector:
    return Connector(
        name="transform",
        description="Shape data with a JSONata expression (no code execution).",
        operations={
            "evaluate": Operation(
                name="evaluate",
                description="Evaluate a JSONata expression; the step's output is its value.",
                input_schema=INPUT_SCHEMA,
                output_schema=OUTPUT_SCHEMA,
                handler=_evaluate,
            )
        },
    )
