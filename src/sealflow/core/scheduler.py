"""What runs next (pure): the successor of a step given its output."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sealflow.core.definitions import Step


def case_key(value: Any) -> str:
    """The text a switch value is matched on: a string as it is, anything else as compact
    JSON (`true`, `3`, `null`), the same text form as `{{ }}` templates."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def successor(step: Step, output: Any, *, failed: bool) -> str | None:
    """The name of the step to run after `step` in its graph, or None when the graph ends.

    `failed`: the step ended in error after its retries. With on_error "branch" the
    error_next step follows, with "continue" the step's next; "stop" is the engine's
    business (it ends the execution and never asks). A branch goes to then/else by the
    truthiness of output["result"]; a switch to cases[output["value"]] (matched as text),
    else to its default; a loop, after its last iteration, and any other step to next.
    """
    if failed:
        if step.on_error == "branch":
            return step.error_next
        if step.on_error == "continue":
            return step.next
        raise ValueError(f"step '{step.name}' failed with on_error 'stop': nothing follows")
    if step.control == "branch":
        return step.then if _field(step, output, "result") else step.else_
    if step.control == "switch":
        key = case_key(_field(step, output, "value"))
        return step.cases[key] if key in step.cases else step.default
    return step.next


def _field(step: Step, output: Any, name: str) -> Any:
    if not isinstance(output, Mapping):
        raise ValueError(
            f"{step.control} step '{step.name}' must output an object with '{name}', "
            f"got {type(output).__name__}"
        )
    return output.get(name)
