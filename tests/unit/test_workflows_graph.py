"""Workflow validation of the graph: edges, start, cycles, references, input schemas."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealflow.core.limits import Limits
from sealflow.core.workflows import WorkflowInvalid
from tests.unit.test_workflows import doc, http, issues, ok, only, transform
from tests.unit.test_workflows_steps import branch, loop, switch

# -- edges and start ----------------------------------------------------------------------


def test_next_defaults_to_the_following_step_and_null_ends() -> None:
    steps = ok(doc(transform("a"), transform("b", next=None), transform("c"))).graph.steps
    assert (steps["a"].next, steps["b"].next, steps["c"].next) == ("b", None, None)


@pytest.mark.parametrize("field", ["next", "then", "else", "default", "error_next"])
def test_edges_to_missing_steps(field: str) -> None:
    extra: dict[str, Any] = {field: "shpe"}
    if field == "error_next":
        step = http("a", on_error="branch", **extra)
    elif field in ("then", "else"):
        step = branch("a", **extra)
    elif field == "default":
        step = switch("a", cases={"x": None}, **extra)
    else:
        step = transform("a", **extra)
    assert only(doc(step, transform("shape"))) == (
        f"$.steps[0].{field}",
        "no step 'shpe' in this list (did you mean 'shape'?)",
    )


def test_case_edge_to_missing_step() -> None:
    step = switch("a", cases={"order": "x", "X-Kind": "y"})
    assert issues(doc(step, transform("b"))) == {
        "$.steps[0].cases.order": "no step 'x' in this list",
        '$.steps[0].cases["X-Kind"]': "no step 'y' in this list",
    }


def test_edges_stay_inside_their_list() -> None:
    body = [transform("inner", next="outer")]
    found = issues(doc(loop("each", steps=body), transform("outer", next="inner")))
    assert found == {
        "$.steps[0].steps[0].next": "no step 'outer' in this list "
        "('outer' is at $.steps[1]; edges stay inside their list)",
        "$.steps[1].next": "no step 'inner' in this list "
        "('inner' is at $.steps[0].steps[0]; edges stay inside their list)",
    }


def test_start() -> None:
    assert ok(doc(transform("a"), transform("b"), start="b")).graph.start == "b"
    assert ok(doc(transform("a"), start=None)).graph.start == "a"
    assert only(doc(transform("a"), start="c")) == ("$.start", "no step 'c' in this list")
    assert only(doc(transform("a"), start=1)) == ("$.start", "must be a step name, found a number")


# -- cycles -----------------------------------------------------------------------------


def test_cycle_names_its_path() -> None:
    assert only(doc(transform("a"), transform("b"), transform("c", next="a"))) == (
        "$.steps[2].next",
        "cycle: a -> b -> c -> a (a workflow runs forward; repeat work with a loop step)",
    )


def test_self_loop_and_cycle_through_branch_and_error_edges() -> None:
    assert only(doc(transform("a", next="a")))[1].startswith("cycle: a -> a ")
    found = issues(
        doc(
            http("a", on_error="branch", error_next="h"),
            branch("b", then="a", **{"else": None}),
            transform("h", next="a"),
        )
    )
    assert set(found) == {"$.steps[1].then", "$.steps[2].next"}
    assert found["$.steps[1].then"].startswith("cycle: a -> b -> a")
    assert found["$.steps[2].next"].startswith("cycle: a -> h -> a")


def test_cycle_inside_a_loop_body() -> None:
    body = [transform("x"), transform("y", next="x")]
    assert only(doc(loop("each", steps=body)))[0] == "$.steps[0].steps[1].next"


def test_unused_fallthrough_of_a_fully_wired_branch_is_no_cycle() -> None:
    # b's implicit next (c) is never taken: then and else are explicit.
    steps = [transform("a"), branch("b", then="d", **{"else": None}), transform("c", next="a"),
             transform("d")]  # fmt: skip
    assert ok(doc(*steps, start="a"))


# -- references -------------------------------------------------------------------------


def test_reference_syntax_errors() -> None:
    step = http("a")
    step["input"]["json"] = {"x": "$.trigger..body", "y": ["go {{ $.trigger.body"]}
    found = issues(doc(step))
    assert set(found) == {"$.steps[0].input.json.x", "$.steps[0].input.json.y[0]"}
    assert found["$.steps[0].input.json.x"].startswith("invalid reference '$.trigger..body'")
    assert found["$.steps[0].input.json.y[0]"].startswith("unclosed '{{' at position 3")


def test_reference_to_unknown_root_suggests() -> None:
    path, message = only(doc(transform("a", "$.step.x")))
    assert path == "$.steps[0].input.expression"
    assert "unknown root 'step' (did you mean 'steps'?)" in message


def test_reference_to_unknown_step() -> None:
    assert only(doc(transform("fetch"), transform("b", "$.steps.fecth.body"))) == (
        "$.steps[1].input.expression",
        "$.steps.fecth.body: unknown step 'fecth' (did you mean 'fetch'?)",
    )


def test_references_in_templates_and_nested_values_have_their_path() -> None:
    step = http("b")
    step["input"]["headers"] = {"X-Id": "id {{ $.steps.nope.id }}"}
    step["input"]["json"] = {"list": [1, "$.steps.nope"]}
    assert issues(doc(transform("a"), step)) == {
        '$.steps[1].input.headers["X-Id"]': "$.steps.nope.id: unknown step 'nope'",
        "$.steps[1].input.json.list[1]": "$.steps.nope: unknown step 'nope'",
    }


def test_reference_to_own_output_or_a_later_step() -> None:
    found = issues(doc(transform("a", "$.steps.a"), transform("b", "$.steps.c"), transform("c")))
    assert found == {
        "$.steps[0].input.expression": "$.steps.a: a step cannot read its own output",
        "$.steps[1].input.expression": "$.steps.c: step 'c' never runs before 'b' "
        "(no path leads from it)",
    }


def test_reference_through_the_error_branch() -> None:
    steps = [http("fetch", on_error="branch", error_next="handle", next=None),
             transform("handle", "$.steps.fetch.error.message")]  # fmt: skip
    assert ok(doc(*steps))


def test_loop_body_sees_enclosing_steps_but_not_the_reverse() -> None:
    body = [transform("inner", "$.steps.before"), transform("inner2", "$.steps.inner")]
    assert ok(doc(transform("before"), loop("each", steps=body)))
    found = issues(
        doc(loop("each", steps=[transform("inner")]), transform("after", "$.steps.inner"))
    )
    assert found == {
        "$.steps[1].input.expression": "$.steps.inner: step 'inner' is inside a loop body, "
        "which cannot be read from here"
    }


def test_loop_body_cannot_read_its_loop_step_or_a_later_outer_step() -> None:
    body = [transform("x", "$.steps.each"), transform("y", "$.steps.later")]
    found = issues(doc(loop("each", steps=body), transform("later")))
    assert found == {
        "$.steps[0].steps[0].input.expression": "$.steps.each: a loop body cannot read its "
        "loop step 'each' (use $.item, $.index)",
        "$.steps[0].steps[1].input.expression": "$.steps.later: step 'later' never runs "
        "before 'each' (no path leads from it)",
    }


def test_item_and_index_only_inside_a_loop_body() -> None:
    assert ok(doc(loop("each", steps=[transform("x", "$.item"), transform("y", "$.index")])))
    found = issues(doc(transform("a", "{{ $.item }}"), loop("each", steps=[transform("z")])))
    assert found == {
        "$.steps[0].input.expression": "$.item: $item is only available inside a loop body"
    }
    step = loop("each", steps=[transform("z")])
    step["input"]["items"] = "$.index"
    assert only(doc(step))[0] == "$.steps[0].input.items"


def test_auth_references_only_with_auth() -> None:
    step = http("a")
    step["input"]["headers"] = {"Authorization": "Bearer {{ $.auth.token }}"}
    assert ok(doc(dict(step, auth="auth_1")))
    assert only(doc(step)) == (
        "$.steps[0].input.headers.Authorization",
        "$.auth.token: $.auth can only be used in a step that sets 'auth'",
    )
    assert issues(doc(transform("t", "$.auth.key", auth="auth_1"))) == {
        "$.steps[0].auth": "connector 'transform' takes no authentication",
        "$.steps[0].input.expression": "$.auth.key: connector 'transform' takes no authentication",
    }


def test_auth_reference_outside_input_is_just_text() -> None:
    assert ok(doc(transform("a", description="uses $.auth.token")))


# -- input schemas ----------------------------------------------------------------------


def test_schema_errors_at_their_path() -> None:
    step = http("a")
    step["input"] = {"method": "FETCH", "url": 5, "mthod": "GET", "headers": {"X": 1}}
    found = issues(doc(step))
    assert found == {
        "$.steps[0].input.method": "'FETCH' is not one of ['GET', 'POST', 'PUT', 'PATCH', "
        "'DELETE', 'HEAD']",
        "$.steps[0].input.url": "5 is not of type 'string'",
        "$.steps[0].input.mthod": "unknown field 'mthod' (did you mean 'method'?)",
        "$.steps[0].input.headers.X": "1 is not of type 'string'",
    }


def test_missing_required_input_fields_at_their_own_path() -> None:
    assert issues(doc({"name": "a", "connector": "http"})) == {
        "$.steps[0].input.method": "is required",
        "$.steps[0].input.url": "is required",
    }


def test_references_and_templates_may_stand_for_any_type() -> None:
    step = http("a", auth="auth_1")
    step["input"] = {
        "method": "$.trigger.method",
        "url": "https://x.test/{{ $.trigger.id }}",
        "headers": "$.trigger.headers",
        "body": "$.trigger.body",
    }
    assert ok(doc(transform("t"), step))
    # the whole input may be a reference
    assert ok(doc({"name": "a", "connector": "http", "input": "$.trigger.request"}))


def test_value_dependent_keywords_are_left_to_run_time() -> None:
    # switch's oneOf [value | expression]: with a reference inside, only the run decides
    step = {"name": "s", "connector": "switch", "cases": {"x": None},
            "input": {"value": "$.trigger.kind", "expression": "$.trigger.kind"}}  # fmt: skip
    assert ok(doc(step))
    step["input"] = {"value": 1, "expression": "1"}
    path, message = only(doc(step))
    assert path == "$.steps[0].input" and "valid under each of" in message


def test_literal_errors_next_to_references_are_still_reported() -> None:
    step = http("a")
    step["input"] = {"method": "GETT", "url": "{{ $.trigger.url }}"}
    assert only(doc(step))[0] == "$.steps[0].input.method"


def test_escaped_text_is_not_a_reference() -> None:
    assert ok(doc(transform("a", "\\$.steps.nope"), transform("b", "cost: \\{{ $.steps.x }}")))


def test_json_like_expressions_are_not_references() -> None:
    assert ok(doc(transform("a", "$.steps.x = 200"), transform("b", "$sum($.trigger.xs)")))


def test_loop_bound_over_the_limit_names_it() -> None:
    step = loop("each", steps=[transform("x")])
    step["input"]["max_iterations"] = 5000
    assert only(doc(step)) == (
        "$.steps[0].input.max_iterations",
        "max_iterations 5000 is over the limit max_loop_iterations=1000",
    )
    assert ok(doc(step), limits=Limits(max_loop_iterations=5000))


def test_five_different_problems_five_issues() -> None:
    steps = [
        http("fetch", timeout=1000, retry={"jitter": 2}),
        transform("b", "$.steps.nope", next="missing"),
        {"name": "c", "connector": "branch", "input": {"condition": "x"}, "cases": {}},
    ]
    found = issues(doc(*steps))
    assert set(found) == {
        "$.steps[0].timeout",
        "$.steps[0].retry.jitter",
        "$.steps[1].next",
        "$.steps[1].input.expression",
        "$.steps[2].cases",
    }


# -- robustness -------------------------------------------------------------------------

FIELDS = ["name", "connector", "operation", "input", "next", "then", "else", "cases",
          "default", "steps", "retry", "timeout", "on_error", "error_next", "auth", "type",
          "cron", "max_attempts", "expression", "items", "url", "method"]  # fmt: skip
WORDS = ["a", "b", "http", "loop", "branch", "switch", "transform", "$.steps.a", "$.item",
         "{{ $.steps.b.x }}", "$.auth.k", "{{", "$.", "branch", "GET", "* * * * *"]  # fmt: skip
junk = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats() | st.sampled_from(WORDS),
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.dictionaries(st.sampled_from(FIELDS) | st.integers(0, 2), kids, max_size=4)
    ),
    max_leaves=12,
)


@given(junk, st.data())
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_any_document_gives_a_definition_or_issues(value: Any, data: Any) -> None:
    document = doc(
        http("a", auth="x", retry={"max_attempts": 2}),
        branch("b", then="c", **{"else": None}),
        switch("c", cases={"x": "d"}),
        loop("d", steps=[transform("e", "$.item")]),
    )
    # put the junk somewhere in a valid document
    target: Any = document
    for _ in range(data.draw(st.integers(0, 3))):
        if isinstance(target, dict) and target:
            target = target[data.draw(st.sampled_from(sorted(target, key=str)))]
        elif isinstance(target, list) and target:
            target = target[data.draw(st.integers(0, len(target) - 1))]
    if isinstance(target, dict):
        target[data.draw(st.sampled_from(FIELDS))] = value
    elif isinstance(target, list):
        target.append(value)
    try:
        ok(document)
    except WorkflowInvalid as exc:
        assert exc.issues
        assert all(i.path.startswith("$") and i.message for i in exc.issues)
