"""Workflow validation, step by step: fields, connectors, operations, retry, timeout,
error handling and the fields of control steps. Each problem at its exact JSON path."""

from __future__ import annotations

from typing import Any

import pytest

from sealflow.core.limits import Limits
from sealflow.core.retry import RetryPolicy
from tests.unit.test_workflows import BareCatalog, doc, http, issues, ok, only, transform


def test_step_must_be_an_object() -> None:
    not_a_step: Any = "b"
    assert only(doc(transform("a"), not_a_step)) == (
        "$.steps[1]",
        "a step must be an object, found a string",
    )


def test_required_step_fields() -> None:
    assert issues(doc({"input": {}})) == {
        "$.steps[0].name": "is required",
        "$.steps[0].connector": "is required",
    }


def test_unknown_step_field_suggests() -> None:
    assert only(doc(transform("a", on_eror="stop"))) == (
        "$.steps[0].on_eror",
        "unknown field 'on_eror' (did you mean 'on_error'?)",
    )


@pytest.mark.parametrize("name", ["Fetch", "1st", "with-dash", "", "a" * 65, 7, None])
def test_bad_step_names(name: Any) -> None:
    path, message = only(doc(transform(name)))
    assert path == "$.steps[0].name"
    assert message.startswith("invalid step name")


def test_good_step_names() -> None:
    assert ok(doc(transform("a"), transform("a_1" + "b" * 61)))


def test_duplicate_names_across_lists() -> None:
    loop = {"name": "each", "connector": "loop", "input": {"items": []}, "steps": [transform("a")]}
    assert only(doc(transform("a"), loop)) == (
        "$.steps[1].steps[0].name",
        "duplicate step name 'a' (already used at $.steps[0])",
    )


def test_unknown_connector_lists_known_ones() -> None:
    path, message = only(doc({"name": "a", "connector": "htp"}))
    assert path == "$.steps[0].connector"
    assert message.startswith("unknown connector 'htp' (did you mean 'http'?); known connectors: ")
    assert "branch, call_workflow, delay, http, loop" in message


def test_unknown_connector_without_listing() -> None:
    path, message = only(doc({"name": "a", "connector": "nope"}), catalog=BareCatalog())
    assert (path, message) == ("$.steps[0].connector", "unknown connector 'nope'")


def test_unknown_operation_lists_the_connectors_operations() -> None:
    step = {"name": "a", "connector": "storage", "operation": "gte", "input": {"key": "k"}}
    assert only(doc(step)) == (
        "$.steps[0].operation",
        "unknown operation 'gte' of connector 'storage' (did you mean 'get'?); "
        "its operations: get, set",
    )


def test_operation_required_for_multi_operation_connectors() -> None:
    step = {"name": "a", "connector": "storage", "input": {"key": "k"}}
    assert only(doc(step)) == (
        "$.steps[0].operation",
        "is required: connector 'storage' has operations get, set",
    )


def test_single_operation_resolved_and_explicit_accepted() -> None:
    definition = ok(doc(transform("a"), transform("b", operation="evaluate")))
    assert [s.operation for s in definition.graph.steps.values()] == ["evaluate", "evaluate"]


def test_auth_only_on_connectors_that_take_it() -> None:
    assert only(doc(transform("a", auth="auth_1"))) == (
        "$.steps[0].auth",
        "connector 'transform' takes no authentication",
    )
    assert only(doc(http("a", auth=""))) == (
        "$.steps[0].auth",
        "must be an authentication id, found a string",
    )
    assert ok(doc(http("a", auth=None))).graph.steps["a"].auth is None


# -- timeouts ---------------------------------------------------------------------------


def test_timeout_limits_name_the_limit() -> None:
    assert only(doc(transform("a", timeout=46))) == (
        "$.steps[0].timeout",
        "timeout 46 s is over the limit connector_timeout_s=45",
    )
    assert ok(doc(http("a", timeout=900))).graph.steps["a"].timeout == 900
    assert only(doc(http("a", timeout=901))) == (
        "$.steps[0].timeout",
        "timeout 901 s is over the limit http_timeout_max_s=900",
    )
    limits = Limits(connector_timeout_s=10)
    assert only(doc(transform("a", timeout=11)), limits=limits)[1].endswith(
        "connector_timeout_s=10"
    )


def test_timeout_limit_named_by_the_operation() -> None:
    step = {"name": "wait", "connector": "delay", "input": {"seconds": 100}, "timeout": 160}
    assert ok(doc(step)).graph.steps["wait"].timeout == 160
    step["timeout"] = 3601
    assert only(doc(step))[1] == "timeout 3601 s is over the limit execution_wall_time_s=3600"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "must be greater than 0, got 0"),
        (-1, "must be greater than 0, got -1"),
        ("30", "must be a number of seconds, found a string"),
        (True, "must be a number of seconds, found a boolean"),
    ],
)
def test_bad_timeouts(value: Any, message: str) -> None:
    assert only(doc(transform("a", timeout=value))) == ("$.steps[0].timeout", message)


# -- retry ------------------------------------------------------------------------------


def test_retry_policy_built() -> None:
    retry = {"max_attempts": 5, "initial_interval": 2, "backoff": 3, "max_interval": 10,
             "jitter": 0}  # fmt: skip
    step = ok(doc(http("a", retry=retry))).graph.steps["a"]
    assert step.retry == RetryPolicy(5, 2.0, 3.0, 10.0, 0.0)
    assert ok(doc(http("a"))).graph.steps["a"].retry == RetryPolicy()


@pytest.mark.parametrize(
    ("retry", "path", "message"),
    [
        ({"max_attempts": 0}, "max_attempts", "must be between 1 and 20, got 0"),
        ({"max_attempts": 21}, "max_attempts", "must be between 1 and 20, got 21"),
        ({"max_attempts": 2.5}, "max_attempts", "must be an integer"),
        ({"initial_interval": 0}, "initial_interval", "must be greater than 0, got 0"),
        ({"max_interval": -1}, "max_interval", "must be greater than 0, got -1"),
        ({"backoff": 0.5}, "backoff", "must be at least 1, got 0.5"),
        ({"jitter": 1.5}, "jitter", "must be between 0 and 1, got 1.5"),
        ({"jitter": "a"}, "jitter", "must be a number"),
        ({"initial_interval": 10, "max_interval": 5}, "max_interval",
         "max_interval (5) must be at least initial_interval (10)"),
        ({"initial_interval": 100}, "initial_interval",
         "max_interval (60.0) must be at least initial_interval (100)"),
        ({"max_atempts": 3}, "max_atempts", "unknown field 'max_atempts' (did you mean "
         "'max_attempts'?)"),
    ],
)  # fmt: skip
def test_bad_retry(retry: dict[str, Any], path: str, message: str) -> None:
    assert only(doc(http("a", retry=retry))) == (f"$.steps[0].retry.{path}", message)


def test_retry_must_be_an_object() -> None:
    assert only(doc(http("a", retry=3))) == (
        "$.steps[0].retry",
        "must be an object, found a number",
    )


# -- on_error ---------------------------------------------------------------------------


def test_on_error_branch_requires_error_next() -> None:
    assert only(doc(http("a", on_error="branch"), transform("b"))) == (
        "$.steps[0].error_next",
        "is required when on_error is branch",
    )
    definition = ok(doc(http("a", on_error="branch", error_next="b", next=None), transform("b")))
    assert definition.graph.steps["a"].error_next == "b"


def test_error_next_only_with_branch() -> None:
    assert only(doc(http("a", on_error="continue", error_next="b"), transform("b"))) == (
        "$.steps[0].error_next",
        "is only used with on_error: branch",
    )
    assert only(doc(http("a", error_next="b"), transform("b")))[0] == "$.steps[0].error_next"


def test_bad_on_error() -> None:
    assert only(doc(http("a", on_error="contine"))) == (
        "$.steps[0].on_error",
        "must be one of stop, continue, branch (did you mean 'continue'?)",
    )


# -- control steps ----------------------------------------------------------------------


def branch(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "connector": "branch", "input": {"condition": "$.trigger.ok"}, **fields}


def switch(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "connector": "switch", "input": {"value": "$.trigger.kind"}, **fields}


def loop(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "connector": "loop", "input": {"items": "$.trigger.items"}, **fields}


def test_then_else_only_on_branch() -> None:
    found = issues(doc(transform("a", then="b", **{"else": "b"}), transform("b")))
    assert found == {
        "$.steps[0].then": "'then' is only used on branch steps",
        "$.steps[0].else": "'else' is only used on branch steps",
    }


def test_cases_default_only_on_switch() -> None:
    found = issues(doc(branch("a", cases={"x": "b"}, default="b", then="b"), transform("b")))
    assert found == {
        "$.steps[0].cases": "'cases' is only used on switch steps",
        "$.steps[0].default": "'default' is only used on switch steps",
    }


def test_steps_only_on_loop_and_required_there() -> None:
    assert only(doc(transform("a", steps=[transform("b")]))) == (
        "$.steps[0].steps",
        "'steps' is only used on loop steps",
    )
    assert only(doc(loop("a"))) == (
        "$.steps[0].steps",
        "is required on loop steps: the body run for each item",
    )
    assert only(doc(loop("a", steps=[]))) == ("$.steps[0].steps", "needs at least one step")


def test_cases_required_and_shaped() -> None:
    assert only(doc(switch("a"))) == ("$.steps[0].cases", "is required on switch steps")
    assert only(doc(switch("a", cases={}))) == (
        "$.steps[0].cases",
        "must be an object mapping values to step names",
    )
    assert only(doc(switch("a", cases={"x": 1}))) == (
        "$.steps[0].cases.x",
        "must be a step name or null, found a number",
    )


def test_edge_fields_are_names_or_null() -> None:
    assert only(doc(transform("a", next=["b"]), transform("b"))) == (
        "$.steps[0].next",
        "must be a step name or null, found a list",
    )


def test_control_steps_in_the_model() -> None:
    definition = ok(
        doc(
            branch("check", then="route", **{"else": None}),
            switch("route", cases={"a": "each", "b": None, "true": "each"}),
            loop("each", steps=[transform("inner", "$.item")]),
            transform("done"),
        )
    )
    steps = definition.graph.steps
    check, route, each = steps["check"], steps["route"], steps["each"]
    assert (check.control, check.then, check.else_, check.next) == (
        "branch",
        "route",
        None,
        "route",
    )
    assert route.cases == {"a": "each", "b": None, "true": "each"}
    assert route.default == "each"  # absent: the following step, like next
    assert (route.then, route.else_, check.cases, check.default) == (None, None, {}, None)
    assert each.body is not None and each.body.start == "inner"
    assert each.body.steps["inner"].next is None
    assert each.next == "done" and each.control == "loop"
    assert steps["done"].body is None and steps["done"].control is None


def test_unknown_connector_still_checks_its_body() -> None:
    step = {"name": "a", "connector": "lop", "steps": [{"name": "B", "connector": "transform"}]}
    found = issues(doc(step))
    assert set(found) == {
        "$.steps[0].connector",
        "$.steps[0].steps[0].name",
        "$.steps[0].steps[0].input.expression",
    }
