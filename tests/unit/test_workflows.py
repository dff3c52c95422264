"""Workflow documents: parsing, the document as a whole, the trigger, the built model.

FakeCatalog (the outer seam) mirrors the built-in connectors' operations and schemas; the
other test_workflows_* modules import it from here.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sealflow.core.limits import Limits
from sealflow.core.retry import RetryPolicy
from sealflow.core.workflows import (
    OperationInfo,
    WorkflowDefinition,
    WorkflowInvalid,
    parse_text,
    validate,
)


def _obj(props: dict[str, Any], required: tuple[str, ...] = (), **more: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(required),
        "additionalProperties": False,
        **more,
    }


EXPRESSION = {"type": "string", "minLength": 1}
OPERATIONS: dict[tuple[str, str], OperationInfo] = {
    (op.connector, op.operation): op
    for op in [
        OperationInfo(
            "http",
            "request",
            _obj(
                {
                    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]},
                    "url": {"type": "string", "minLength": 1},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                    "query": {"type": "object"},
                    "json": {},
                    "body": {"type": "string"},
                },
                ("method", "url"),
            ),
            None,
            True,
            "http_timeout_max_s",
        ),
        OperationInfo(
            "transform", "evaluate", _obj({"expression": EXPRESSION}, ("expression",)), None, False
        ),
        OperationInfo(
            "branch",
            "evaluate",
            _obj({"condition": {"oneOf": [EXPRESSION, {"type": "boolean"}]}}, ("condition",)),
            "branch",
            False,
        ),
        OperationInfo(
            "switch",
            "evaluate",
            _obj(
                {"value": {}, "expression": EXPRESSION, "cases": {"type": "array"}},
                oneOf=[{"required": ["value"]}, {"required": ["expression"]}],
            ),
            "switch",
            False,
        ),
        OperationInfo(
            "loop",
            "for_each",
            _obj(
                {"items": {"type": "array"}, "max_iterations": {"type": "integer", "minimum": 1}},
                ("items",),
            ),
            "loop",
            False,
        ),
        OperationInfo(
            "delay",
            "wait",
            _obj({"seconds": {"type": "number", "minimum": 0, "maximum": 3600}}, ("seconds",)),
            None,
            False,
            "execution_wall_time_s",
        ),
        OperationInfo(
            "respond",
            "respond",
            _obj(
                {
                    "status": {"type": "integer", "minimum": 100, "maximum": 599},
                    "body": {},
                    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
                }
            ),
            None,
            False,
        ),
        OperationInfo(
            "call_workflow",
            "call",
            _obj(
                {"workflow_id": {"type": "string"}, "input": {}, "wait": {"type": "boolean"}},
                ("workflow_id",),
            ),
            None,
            False,
        ),
        OperationInfo(
            "raise_error",
            "raise",
            _obj({"message": {"type": "string"}, "code": {"type": "string"}}, ("message",)),
            None,
            False,
        ),
        OperationInfo("storage", "get", _obj({"key": {"type": "string"}}, ("key",)), None, False),
        OperationInfo(
            "storage",
            "set",
            _obj({"key": {"type": "string"}, "value": {}}, ("key", "value")),
            None,
            False,
        ),
    ]
}


class FakeCatalog:
    def lookup(self, connector: str, operation: str | None) -> OperationInfo | None:
        if operation is None:
            ops = self.operations(connector)
            if len(ops) != 1:
                return None
            operation = ops[0]
        return OPERATIONS.get((connector, operation))

    def operations(self, connector: str) -> list[str]:
        return sorted(op for c, op in OPERATIONS if c == connector)

    def connectors(self) -> list[str]:
        return sorted({c for c, _ in OPERATIONS})


class BareCatalog(FakeCatalog):
    """A catalog without the optional connectors() listing."""

    connectors = None  # type: ignore[assignment]


CATALOG = FakeCatalog()
LIMITS = Limits()


def doc(*steps: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A minimal valid document with these steps (default: one transform step)."""
    return {
        "name": "test",
        "trigger": {"type": "manual"},
        "steps": list(steps) or [transform("a")],
        **top,
    }


def transform(name: str, expression: str = "1", **fields: Any) -> dict[str, Any]:
    return {"name": name, "connector": "transform", "input": {"expression": expression}, **fields}


def http(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "connector": "http",
        "input": {"method": "GET", "url": "https://api.example.test/"},
        **fields,
    }


def ok(document: Any, limits: Limits = LIMITS, catalog: Any = CATALOG) -> WorkflowDefinition:
    return validate(document, catalog, limits)


def issues(document: Any, limits: Limits = LIMITS, catalog: Any = CATALOG) -> dict[str, str]:
    """{path: message} of every issue (asserting there is exactly one message per path)."""
    with pytest.raises(WorkflowInvalid) as info:
        validate(document, catalog, limits)
    found = {i.path: i.message for i in info.value.issues}
    assert len(found) == len(info.value.issues), info.value.issues
    return found


def only(document: Any, **kw: Any) -> tuple[str, str]:
    found = issues(document, **kw)
    assert len(found) == 1, found
    return next(iter(found.items()))


# -- the documented example -------------------------------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflows.md"


def test_the_documented_example_is_valid() -> None:
    text = DOC.read_text()
    example = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert example is not None
    definition = ok(parse_text(example.group(1)))
    assert definition.trigger.type == "webhook"
    assert definition.trigger.respond == "wait"
    assert definition.graph.start == "fetch"
    fetch = definition.graph.steps["fetch"]
    assert fetch.retry == RetryPolicy()
    assert fetch.on_error == "branch" and fetch.error_next == "handle_failure"


def test_the_documented_example_is_valid_with_the_real_connectors() -> None:
    from sealflow.connectors.registry import ConnectorRegistry

    example = re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)
    assert example is not None
    definition = validate(parse_text(example.group(1)), ConnectorRegistry.discover(), LIMITS)
    assert definition.graph.steps["each_line"].control == "loop"


# -- parse_text ---------------------------------------------------------------------------


def test_parse_json_and_yaml_sniffed() -> None:
    assert parse_text('{"name": "x"}') == {"name": "x"}
    assert parse_text("name: x\nsteps: []\n") == {"name": "x", "steps": []}
    assert parse_text("[1]", "json") == [1]
    assert parse_text('{"a": 1}', "yaml") == {"a": 1}


@pytest.mark.parametrize(
    ("text", "fmt", "where"),
    [
        ('{"name": "x",\n  "steps": [}', None, "line 2, column 13"),
        ("name: x\n  bad: [1, 2\n", "yaml", "line 2, column 6"),
        ("a: b: c\n", None, "line 1, column 5"),
    ],
)
def test_syntax_errors_give_line_and_column_at_root(text: str, fmt: Any, where: str) -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_text(text, fmt)
    (issue,) = info.value.issues
    assert issue.path == "$"
    assert where in issue.message


def test_json_refuses_nan() -> None:
    with pytest.raises(WorkflowInvalid):
        parse_text('{"a": NaN}')


def test_yaml_never_builds_python_objects() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_text("a: !!python/object/apply:os.system ['true']\n")
    assert info.value.issues[0].path == "$"


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(WorkflowInvalid) as info:
        parse_text("\n".join(lines) + "\n")
    assert "too large" in info.value.issues[0].message


def test_deep_nesting_is_refused() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_text("[" * 100 + "]" * 100)
    assert "deeper than 64" in info.value.issues[0].message
    with pytest.raises(WorkflowInvalid):
        parse_text("[" * 100_000 + "]" * 100_000)  # past the parser's own recursion


def test_oversized_text_is_refused() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        parse_text("a: " + "x" * 2_000_001)
    assert "too large" in info.value.issues[0].message


def test_yaml_values_json_cannot_hold_are_reported_with_their_path() -> None:
    document = parse_text(
        "name: x\ntrigger: {type: manual}\nsteps:\n"
        "  - name: a\n    connector: switch\n    input: {value: {when: 2024-01-01}}\n"
        "    cases: {1: b}\n"
        "  - name: b\n    connector: transform\n    input: {expression: '1'}\n"
    )
    found = issues(document)
    assert found["$.steps[0].input.value.when"] == "a date is not a JSON value (quote it in YAML)"
    assert "key 1 must be a string" in found["$.steps[0].cases"]


# -- the document as a whole ----------------------------------------------------------------


def test_not_an_object() -> None:
    assert only([1, 2]) == ("$", "a workflow must be an object, found a list")


def test_missing_required_top_fields() -> None:
    found = issues({})
    assert found == {"$.name": "is required", "$.trigger": "is required", "$.steps": "is required"}


def test_unknown_top_field_suggests() -> None:
    path, message = only(doc(strat="a"))
    assert path == "$.strat"
    assert message == "unknown field 'strat' (did you mean 'start'?)"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "must not be empty"),
        ("x" * 201, "must be at most 200 characters, found 201"),
        (3, "must be a string, found a number"),
    ],
)
def test_name(name: Any, message: str) -> None:
    assert only(doc(name=name)) == ("$.name", message)


def test_description_must_be_text() -> None:
    assert only(doc(description=["x"])) == ("$.description", "must be a string, found a list")


def test_empty_step_list() -> None:
    assert only(doc(steps=[])) == ("$.steps", "needs at least one step")
    assert only(doc(steps={"a": 1})) == ("$.steps", "must be a list of steps, found an object")


def test_total_step_count_is_limited_naming_the_limit() -> None:
    loop = {
        "name": "each",
        "connector": "loop",
        "input": {"items": []},
        "steps": [transform("c"), transform("d")],
    }
    path, message = only(doc(transform("a"), loop), limits=Limits(max_steps_per_workflow=3))
    assert path == "$.steps"
    assert "4 steps" in message and "max_steps_per_workflow=3" in message


# -- triggers --------------------------------------------------------------------------------


def trig(**trigger: Any) -> dict[str, Any]:
    return doc(trigger=trigger)


def test_trigger_types() -> None:
    for kind in ("manual", "webhook", "callable"):
        assert ok(trig(type=kind)).trigger.type == kind
    assert only(trig(type="hook")) == (
        "$.trigger.type",
        "must be one of manual, webhook, schedule, callable (did you mean 'webhook'?)",
    )
    assert only(trig()) == ("$.trigger.type", "is required")
    assert only(doc(trigger="manual")) == ("$.trigger", "must be an object, found a string")


def test_webhook_fields() -> None:
    t = ok(trig(type="webhook", respond="wait", signature=True)).trigger
    assert (t.respond, t.signature_header) == ("wait", "X-Sealflow-Signature")
    assert ok(trig(type="webhook")).trigger.signature_header is None
    signed = ok(trig(type="webhook", signature={"header": "X-Hub-Signature-256"}))
    assert signed.trigger.signature_header == "X-Hub-Signature-256"
    assert issues(trig(type="webhook", respond="later", signature={"header": "bad header",
                                                                   "secret": "x"})) == {
        "$.trigger.respond": "must be immediate or wait",
        "$.trigger.signature.header": "must be an HTTP header name",
        "$.trigger.signature.secret": "unknown field 'secret'",
    }


def test_type_specific_trigger_fields() -> None:
    assert issues(trig(type="manual", cron="* * * * *", respond="wait", signature=None)) == {
        "$.trigger.cron": "'cron' is only used on schedule triggers",
        "$.trigger.respond": "'respond' is only used on webhook triggers",
        "$.trigger.signature": "'signature' is only used on webhook triggers",
    }
    assert only(trig(type="webhook", timezone="UTC")) == (
        "$.trigger.timezone",
        "'timezone' is only used on schedule triggers",
    )


def test_schedule() -> None:
    t = ok(trig(type="schedule", cron="*/5 * * * *", timezone="Europe/Paris", input={"a": 1}))
    assert (t.trigger.cron, t.trigger.timezone, t.trigger.input) == (
        "*/5 * * * *",
        "Europe/Paris",
        {"a": 1},
    )
    assert ok(trig(type="schedule", cron="@daily")).trigger.timezone == "UTC"
    assert only(trig(type="schedule")) == ("$.trigger.cron", "is required on schedule triggers")


@pytest.mark.parametrize("cron", ["61 * * * *", "* * * *", "0 0 * * * *", "@reboot", "soon"])
def test_bad_cron(cron: str) -> None:
    path, message = only(trig(type="schedule", cron=cron))
    assert path == "$.trigger.cron" and message.startswith("invalid cron expression")


@pytest.mark.parametrize("tz", ["Mars/Olympus", "../../etc/passwd", "", 5])
def test_bad_timezone(tz: Any) -> None:
    path, _ = only(trig(type="schedule", cron="0 * * * *", timezone=tz))
    assert path == "$.trigger.timezone"


def test_trigger_unknown_field() -> None:
    assert only(trig(type="schedule", cron="0 * * * *", timzone="UTC")) == (
        "$.trigger.timzone",
        "unknown field 'timzone' (did you mean 'timezone'?)",
    )


# -- the built model -------------------------------------------------------------------------


def test_model_and_normalised_document() -> None:
    source = doc(
        http("fetch", auth="auth_1", timeout=30, retry={"max_attempts": 2}),
        {"name": "store", "connector": "storage", "operation": "set",
         "input": {"key": "k", "value": "$.steps.fetch.body"}},
        description="d",
    )  # fmt: skip
    definition = ok(source)
    assert (definition.name, definition.description) == ("test", "d")
    fetch = definition.graph.steps["fetch"]
    assert fetch.operation == "request"
    assert fetch.auth == "auth_1" and fetch.timeout == 30.0
    assert fetch.retry == RetryPolicy(max_attempts=2)
    assert fetch.next == "store" and definition.graph.steps["store"].next is None
    assert definition.graph.start == "fetch"
    assert list(definition.graph.steps) == ["fetch", "store"]
    saved = definition.document
    assert saved["steps"][0]["operation"] == "request"  # pinned on save
    assert list(saved["steps"][0])[:3] == ["name", "connector", "operation"]
    assert "operation" not in source["steps"][0]  # the input is not modified
    saved["steps"][1]["input"]["key"] = "changed"
    assert source["steps"][1]["input"]["key"] == "k"  # a copy


def test_all_problems_are_reported_at_once() -> None:
    document = {
        "name": "",
        "trigger": {"type": "schedule", "cron": "never"},
        "steps": [
            {"name": "a", "connector": "htp", "input": {}},
            transform("b", nxt="a"),
            transform("b"),
            http("c", timeout=0),
        ],
    }
    found = issues(document)
    assert set(found) == {
        "$.name",
        "$.trigger.cron",
        "$.steps[0].connector",
        "$.steps[1].nxt",
        "$.steps[2].name",
        "$.steps[3].timeout",
    }
    assert found["$.steps[1].nxt"] == "unknown field 'nxt' (did you mean 'next'?)"
    assert found["$.steps[2].name"] == "duplicate step name 'b' (already used at $.steps[1])"


def test_error_message_summarises() -> None:
    with pytest.raises(WorkflowInvalid) as info:
        validate(doc(name=""), CATALOG, LIMITS)
    assert str(info.value) == "invalid workflow: $.name: must not be empty"
    assert info.value.as_dict()["issues"] == [{"path": "$.name", "message": "must not be empty"}]
