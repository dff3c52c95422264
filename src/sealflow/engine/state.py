"""The state of one execution while a worker holds it, shared by the runner (its
lifecycle) and the walker (its graph)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sealflow.core.errors import SealflowError
from sealflow.engine import records
from sealflow.redaction.redactor import Redactor
from sealflow.regions.cells import Cell


class Stop(Exception):
    """A step failed with on_error: stop; the execution fails with this error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "step failed"))
        self.error = error


@dataclass
class RunState:
    cell: Cell
    row: Any
    owner: str
    steps_done: dict[str, Any]
    deadline: datetime
    seq: int
    steps_run: int
    # Its account's rules and every secret the run has touched; masks what is recorded.
    redactor: Redactor
    response_sent: bool = False
    stop_reason: str | None = None  # "cancelled" | "lease_lost" | "shutdown"
    # The webhook answer of a respond step, written with that step's record, then published.
    pending_response: dict[str, Any] | None = None
    # The record of the execution's last step, written with the execution's end.
    deferred: tuple[int, records.StepRecord, datetime] | None = None


def error_record(err: SealflowError, step: str | None = None) -> dict[str, Any]:
    out = err.as_dict()
    if step is not None:
        out["step"] = step
    return out
