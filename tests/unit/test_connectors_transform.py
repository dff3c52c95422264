"""The JSONata entry point and the transform connector."""

from __future__ import annotations

import concurrent.futures
import time
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from sealflow.connectors.transform import (
    compile_jsonata,
    connector,
    evaluate_jsonata,
    jsonata_truthy,
)
from sealflow.core.errors import ConnectorError

CONTEXT = {
    "trigger": {"body": {"id": 7, "lines": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 3}]}},
    "steps": {"fetch": {"status": 200, "body": {"id": 7, "email": "ada@example.test"}}},
    "item": None,
    "index": None,
}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_evaluates_against_the_context() -> None:
    expression = '{"id": $.steps.fetch.body.id, "email": $.steps.fetch.body.email}'
    assert evaluate_jsonata(expression, CONTEXT) == {"id": 7, "email": "ada@example.test"}
    assert evaluate_jsonata("$.steps.fetch.status = 200", CONTEXT) is True
    assert evaluate_jsonata("$sum(trigger.body.lines.qty)", CONTEXT) == 5
    assert evaluate_jsonata("trigger.body.lines.sku", CONTEXT) == ["a", "b"]
    assert type(evaluate_jsonata("trigger.body.lines.sku", CONTEXT)) is list  # plain JSON
    assert evaluate_jsonata("$.steps.missing", CONTEXT) is None


def test_syntax_error_names_code_and_position() -> None:
    with pytest.raises(ConnectorError) as caught:
        evaluate_jsonata("$.a +", {})
    error = caught.value
    assert error.code == "expression_error" and error.retryable is False
    assert "S0207" in error.message and "position 5" in error.message
    assert error.details == {"jsonata_code": "S0207", "position": 5}


def test_evaluation_errors() -> None:
    with pytest.raises(ConnectorError, match="T2001"):
        evaluate_jsonata('"abc" + 1', {})
    with pytest.raises(ConnectorError, match="function"):
        evaluate_jsonata("function($x){ $x }", {})
    with pytest.raises(ConnectorError, match="characters"):
        compile_jsonata("1+" * 20_000 + "1")


def test_runaway_expressions_are_bounded() -> None:
    started = time.monotonic()
    with pytest.raises(ConnectorError, match="D1012"):  # infinite tail recursion: time bound
        evaluate_jsonata("($f := function($n){ $f($n + 1) }; $f(0))", None, timeout_ms=200)
    assert time.monotonic() - started < 2
    with pytest.raises(ConnectorError, match="D1011"):  # deep recursion: depth bound
        evaluate_jsonata("($f := function($n){ $n <= 1 ? 1 : $n * $f($n - 1) }; $f(1000))",
                         None)
    assert evaluate_jsonata("($f := function($n){ $n <= 1 ? 1 : $n + $f($n - 1) }; $f(50))",
                            None) == 1275


def test_compiled_expressions_are_cached_and_reused_safely() -> None:
    expression = "$sum(xs.(price * qty)) + n"
    assert compile_jsonata(expression) is compile_jsonata(expression)

    def run(i: int) -> Any:
        data = {"xs": [{"price": i, "qty": 2}, {"price": 1, "qty": i}], "n": i % 5}
        return evaluate_jsonata(expression, data), 3 * i + i % 5

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for got, want in pool.map(run, range(2000)):
            assert got == want


def test_bounds_start_at_each_evaluation() -> None:
    # A cached expression must not inherit a deadline counted from when it was compiled.
    expression = "$count([1..1000])"
    evaluate_jsonata(expression, None, timeout_ms=100)
    time.sleep(0.15)
    assert evaluate_jsonata(expression, None, timeout_ms=100) == 1000


def test_now_is_the_evaluation_time() -> None:
    first = evaluate_jsonata("$millis()", None)
    time.sleep(0.02)
    compile_jsonata("1 + 2")  # constructing another expression must not skew the clock
    assert evaluate_jsonata("$millis()", None) > first


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0, False), (1, True), ("", False), ("x", True), ([], False), ([0], False),
     ([0, 1], True), ({}, False), ({"a": 1}, True), (None, False), (False, False)],
)
def test_truthiness_follows_jsonata(value: Any, expected: bool) -> None:
    assert jsonata_truthy(value) is expected


class _Ctx:
    account_id = "acc"
    execution_id = "exe"
    step_name = "shape"
    credential = None
    timeout_s = 45.0

    def evaluate(self, expression: str) -> Any:
        return evaluate_jsonata(expression, CONTEXT)


@pytest.mark.anyio
async def test_transform_connector() -> None:
    conn = connector()
    op = conn.operation(None)
    assert op is not None and op.name == "evaluate" and conn.auth_types == ()
    Draft202012Validator.check_schema(op.input_schema)
    validator = Draft202012Validator(op.input_schema)
    assert validator.is_valid({"expression": "$.a"})
    assert not validator.is_valid({"expression": ""})
    assert not validator.is_valid({"expression": "$.a", "other": 1})
    out = await op.handler({"expression": '{"id": $.steps.fetch.body.id}'}, _Ctx())  # type: ignore[arg-type]
    assert out == {"id": 7}
