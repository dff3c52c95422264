"""The execution and step state machines."""

from __future__ import annotations

import itertools

import pytest

from sealflow.core.errors import SealflowError
from sealflow.core.executions import (
    STEP_TERMINAL,
    TERMINAL,
    InvalidTransition,
    Status,
    StepStatus,
    step_transition,
    transition,
)

ALLOWED = {
    (Status.QUEUED, Status.RUNNING),
    (Status.QUEUED, Status.CANCELLED),
    (Status.RUNNING, Status.SUCCEEDED),
    (Status.RUNNING, Status.FAILED),
    (Status.RUNNING, Status.CANCELLED),
    (Status.RUNNING, Status.QUEUED),  # handed back: lease lost, platform retry, shutdown
}


def test_values_are_stable_strings() -> None:
    assert [s.value for s in Status] == ["queued", "running", "succeeded", "failed", "cancelled"]
    assert Status("running") is Status.RUNNING
    assert str(Status.RUNNING) == "running"
    assert TERMINAL == {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}


@pytest.mark.parametrize(("current", "new"), list(itertools.product(Status, Status)))
def test_every_pair(current: Status, new: Status) -> None:
    if (current, new) in ALLOWED:
        assert transition(current, new) is new
    else:
        with pytest.raises(InvalidTransition) as info:
            transition(current, new)
        assert info.value.message == f"an execution cannot go from {current} to {new}"
        assert isinstance(info.value, SealflowError)
        assert info.value.code == "invalid_transition" and not info.value.retryable


def test_terminal_states_are_final() -> None:
    for state in TERMINAL:
        for new in Status:
            with pytest.raises(InvalidTransition):
                transition(state, new)


def test_step_statuses() -> None:
    assert {s.value for s in StepStatus} == {
        "running", "succeeded", "failed", "continued", "cancelled",
    }  # fmt: skip
    assert StepStatus.RUNNING not in STEP_TERMINAL
    for end in STEP_TERMINAL:
        assert step_transition(StepStatus.RUNNING, end) is end
        with pytest.raises(InvalidTransition, match=f"a step cannot go from {end} to running"):
            step_transition(end, StepStatus.RUNNING)
    with pytest.raises(InvalidTransition):
        step_transition(StepStatus.RUNNING, StepStatus.RUNNING)
