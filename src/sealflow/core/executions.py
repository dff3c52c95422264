"""The execution state machine: which status may follow which (SPEC W7, W8)."""

from __future__ import annotations

from enum import StrEnum

from sealflow.core.errors import SealflowError


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL: frozenset[Status] = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})

# running -> queued is a hand-back (W8): a lost lease, a platform retry, a node shutting down.
_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.QUEUED: frozenset({Status.RUNNING, Status.CANCELLED}),
    Status.RUNNING: frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.QUEUED}),
    Status.SUCCEEDED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}


class InvalidTransition(SealflowError):
    """A status change the state machine does not allow (a bug or a lost race)."""

    code = "invalid_transition"
    retryable = False

    def __init__(self, kind: str, current: str, new: str):
        super().__init__(f"{kind} cannot go from {current} to {new}")
        self.current = current
        self.new = new


def transition(current: Status, new: Status) -> Status:
    """Return `new` when an execution may go from `current` to it; else InvalidTransition."""
    if new not in _ALLOWED[current]:
        raise InvalidTransition("an execution", current.value, new.value)
    return new


class StepStatus(StrEnum):
    """The status of one step run (one record per step per loop iteration).

    `continued`: the step failed and its `on_error` (continue or branch) let the execution go
    on; its output is `{"error": …}`. `cancelled`: the execution was cancelled while it ran.
    Steps on branches not taken get no record at all.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CONTINUED = "continued"
    CANCELLED = "cancelled"


STEP_TERMINAL: frozenset[StepStatus] = frozenset(
    {StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.CONTINUED, StepStatus.CANCELLED}
)


def step_transition(current: StepStatus, new: StepStatus) -> StepStatus:
    """A step run only leaves `running`, once."""
    if current is not StepStatus.RUNNING or new is StepStatus.RUNNING:
        raise InvalidTransition("a step", current.value, new.value)
    return new
