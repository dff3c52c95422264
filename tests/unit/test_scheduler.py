"""What runs next: successor() over steps built by validation (no hand-made Steps)."""

from __future__ import annotations

from typing import Any

import pytest

from sealflow.core.scheduler import case_key, successor
from sealflow.core.workflows import Step
from tests.unit.test_workflows import doc, http, ok, transform
from tests.unit.test_workflows_steps import branch, loop, switch


def steps(*items: dict[str, Any]) -> dict[str, Step]:
    return dict(ok(doc(*items)).graph.steps)


def test_plain_step_goes_to_next() -> None:
    s = steps(transform("a"), transform("b"), transform("c", next=None))
    assert successor(s["a"], 1, failed=False) == "b"
    assert successor(s["c"], 1, failed=False) is None


def test_failed_steps() -> None:
    s = steps(
        http("a", on_error="branch", error_next="h"),
        http("b", on_error="continue", next="c"),
        http("c"),
        transform("h"),
    )
    assert successor(s["a"], None, failed=True) == "h"
    assert successor(s["a"], {"status": 200}, failed=False) == "b"
    assert successor(s["b"], None, failed=True) == "c"
    with pytest.raises(ValueError, match="on_error 'stop'"):
        successor(s["c"], None, failed=True)


@pytest.mark.parametrize(
    ("result", "expected"),
    [(True, "yes"), (False, "no"), (1, "yes"), (0, "no"), (None, "no"), ("x", "yes")],
)
def test_branch_by_truthiness(result: Any, expected: str) -> None:
    s = steps(branch("b", then="yes", **{"else": "no"}), transform("yes"), transform("no"))
    assert successor(s["b"], {"result": result}, failed=False) == expected
    assert successor(s["b"], {}, failed=False) == "no"


def test_branch_defaults_to_next_and_null_ends() -> None:
    s = steps(branch("b", **{"else": None}), transform("after"))
    assert successor(s["b"], {"result": True}, failed=False) == "after"
    assert successor(s["b"], {"result": False}, failed=False) is None


def test_switch_matches_the_value_as_text() -> None:
    cases = {"order": "o", "3": "three", "true": "t", "null": "n", "refund": None}
    s = steps(switch("s", cases=cases, default="d"), transform("o"), transform("three"),
              transform("t"), transform("n"), transform("d"))  # fmt: skip
    route = s["s"]
    assert successor(route, {"value": "order", "case": "order"}, failed=False) == "o"
    assert successor(route, {"value": 3}, failed=False) == "three"
    assert successor(route, {"value": True}, failed=False) == "t"
    assert successor(route, {"value": None}, failed=False) == "n"
    assert successor(route, {"value": "refund"}, failed=False) is None  # a case may end
    assert successor(route, {"value": "other"}, failed=False) == "d"
    assert successor(route, {}, failed=False) == "n"  # no value is null


def test_switch_without_default_falls_through_to_next() -> None:
    s = steps(switch("s", cases={"a": None}), transform("after"))
    assert successor(s["s"], {"value": "zzz"}, failed=False) == "after"


def test_control_output_must_be_an_object() -> None:
    s = steps(branch("b"), transform("x"))
    with pytest.raises(ValueError, match="branch step 'b' must output an object with 'result'"):
        successor(s["b"], [True], failed=False)


def test_loop_step_goes_to_next_after_its_body() -> None:
    s = steps(loop("each", steps=[transform("x")]), transform("after"))
    assert successor(s["each"], {"results": [], "count": 0}, failed=False) == "after"
    body = s["each"].body
    assert body is not None and successor(body.steps["x"], 1, failed=False) is None


def test_case_key() -> None:
    assert [case_key(v) for v in ["a", 1, 1.5, True, None, [1, "b"], {"k": "é"}]] == [
        "a", "1", "1.5", "true", "null", '[1,"b"]', '{"k":"é"}',
    ]  # fmt: skip
