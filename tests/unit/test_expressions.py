"""References and templates: parsing, finding, resolving (with and without secrets)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealflow.core.expressions import (
    Reference,
    ReferenceError_,
    ResolvedText,
    find_references,
    is_dynamic,
    parse_reference,
    resolve,
)
from sealflow.core.secrets import Secret

# -- parse_reference ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "root", "path"),
    [
        ("$.trigger", "trigger", ()),
        ("$.trigger.body.email", "trigger", ("body", "email")),
        ("$.trigger.headers.x-request-id", "trigger", ("headers", "x-request-id")),
        ("$.steps.fetch.body.items[0].id", "steps", ("fetch", "body", "items", 0, "id")),
        ("$.steps.fetch.body.items[-1]", "steps", ("fetch", "body", "items", -1)),
        ('$.trigger.body["first name"]', "trigger", ("body", "first name")),
        ("$.trigger.body['a.b']", "trigger", ("body", "a.b")),
        ('$.trigger.body["q\\"uote"]', "trigger", ("body", 'q"uote')),
        ("$.trigger.body.0", "trigger", ("body", "0")),
        ("$.auth.api_key", "auth", ("api_key",)),
        ("$.item", "item", ()),
        ("$.item.sku", "item", ("sku",)),
        ("$.index", "index", ()),
    ],
)
def test_parse_reference(text: str, root: str, path: tuple[Any, ...]) -> None:
    assert parse_reference(text) == Reference(root, path, text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("trigger.body", "a reference starts with '$.'"),
        ("$.", "expected one of trigger, steps, auth, item, index after '$.'"),
        ("$.step.x", "unknown root 'step' (did you mean 'steps'?)"),
        ("$.trigger..a", "expected a name after '.' at position 9"),
        ("$.trigger.a[x]", 'expected [<index>] or ["<key>"] at position 11'),
        ("$.trigger.a b", "unexpected ' ' at position 11"),
        ("$.steps", "name the step: $.steps.<step name>"),
        ("$.steps[0]", "name the step"),
        ("$.auth", "name one field of the authentication"),
        ("$.auth.a.b", "name one field of the authentication"),
        ("$.index.x", "$.index is a number and has no fields"),
    ],
)
def test_parse_reference_errors(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="invalid reference") as info:
        parse_reference(text)
    assert why in str(info.value)


# -- find_references ----------------------------------------------------------------------


def test_find_references_with_paths() -> None:
    value = {
        "url": "https://x.test/{{ $.trigger.body.id }}/{{$.steps.a.n}}",
        "json": ["$.steps.a", "plain", "\\$.not.a.ref", "\\{{ $.not }}"],
        "X-Key": "$.auth.key",
        "n": 5,
    }
    found = [(path, ref.text) for path, ref in find_references(value, "$.input")]
    assert found == [
        ("$.input.url", "$.trigger.body.id"),
        ("$.input.url", "$.steps.a.n"),
        ("$.input.json[0]", "$.steps.a"),
        ('$.input["X-Key"]', "$.auth.key"),
    ]


def test_find_references_raises_on_syntax_errors_with_the_path() -> None:
    with pytest.raises(ValueError, match=r"^\$\.a\[1\]: invalid reference"):
        find_references({"a": ["ok", "$.trigger..x"]})
    with pytest.raises(ValueError, match=r"unclosed '\{\{' at position 2"):
        find_references("a {{ $.trigger")
    with pytest.raises(ValueError, match=r"in '\{\{ \}\}' at position 0"):
        find_references("{{ trigger }}")


def test_text_that_is_not_reference_shaped_stays_text() -> None:
    for text in ["$.steps.a = 200", "$sum(x)", "$.50 off", "price: $.50", "a }} b"]:
        assert find_references(text) == []
        assert not is_dynamic(text)
        assert resolve(text, {}) == text


# -- resolve -----------------------------------------------------------------------------

CONTEXT: dict[str, Any] = {
    "trigger": {"body": {"id": 7, "email": "a@x.test", "tags": ["a", "b"], "none": None}},
    "steps": {"fetch": {"status": 200, "body": {"items": [{"id": 1}, {"id": 2}]}}},
}


def test_whole_string_reference_gives_the_value() -> None:
    assert resolve("$.trigger.body.id", CONTEXT) == 7
    assert resolve("$.trigger.body.none", CONTEXT) is None
    assert resolve("$.steps.fetch.body.items[-1]", CONTEXT) == {"id": 2}
    assert resolve({"a": ["$.trigger.body.tags"]}, CONTEXT) == {"a": [["a", "b"]]}


def test_templates_interpolate_text_forms() -> None:
    value = "id={{ $.trigger.body.id }} tags={{$.trigger.body.tags}} n={{ $.trigger.body.none }}"
    assert resolve(value, CONTEXT) == 'id=7 tags=["a","b"] n=null'
    assert resolve("{{ $.trigger.body.email }}", CONTEXT) == "a@x.test"
    assert resolve("{{ $.steps.fetch.body.items[0] }}", CONTEXT) == '{"id":1}'


def test_escapes() -> None:
    assert resolve("\\{{ $.trigger.body.id }} is {{ $.trigger.body.id }}", CONTEXT) == (
        "{{ $.trigger.body.id }} is 7"
    )
    assert resolve("\\$.trigger.body.id", CONTEXT) == "$.trigger.body.id"
    assert resolve("a\\b", CONTEXT) == "a\\b"


def test_loop_variables() -> None:
    ctx = {**CONTEXT, "item": {"sku": "X"}, "index": 3}
    assert resolve(["$.item.sku", "$.index", "#{{ $.index }}"], ctx) == ["X", 3, "#3"]


@pytest.mark.parametrize(
    ("text", "message", "segment"),
    [
        ("$.trigger.body.missing", "$.trigger.body.missing: no key 'missing'", "missing"),
        ("$.steps.other.x", "step 'other' has no output (it has not run", "other"),
        ("$.steps.fetch.body.items[5]", "index 5 is out of range (the list has 2 items)", 5),
        ("$.trigger.body.id.x", "'.x' needs an object, found a number", "x"),
        ("$.trigger.body[0]", "[0] needs a list, found an object", 0),
        ("$.item", "$item is not available inside a loop body", None),
        ("x {{ $.trigger.nope }}", "no key 'nope'", "nope"),
    ],
)
def test_missing_data_raises_reference_error(text: str, message: str, segment: Any) -> None:
    with pytest.raises(ReferenceError_) as info:
        resolve({"a": text}, CONTEXT)
    assert message in str(info.value)
    assert info.value.segment == segment
    assert info.value.code == "reference_error" and info.value.retryable is False


def test_invalid_syntax_at_run_time_is_a_reference_error() -> None:
    with pytest.raises(ReferenceError_, match="unclosed"):
        resolve("{{ $.trigger", CONTEXT)


def test_result_shares_nothing_with_the_context() -> None:
    out = resolve({"items": "$.steps.fetch.body.items"}, CONTEXT)
    out["items"][0]["id"] = 99
    assert CONTEXT["steps"]["fetch"]["body"]["items"][0]["id"] == 1


def test_non_json_leaves_untouched() -> None:
    assert resolve({"n": 1.5, "b": True, "z": None, "t": ("x", 1)}, CONTEXT) == {
        "n": 1.5,
        "b": True,
        "z": None,
        "t": ["x", 1],
    }


# -- auth and secrets ---------------------------------------------------------------------

AUTH: dict[str, Secret | str] = {"token": Secret("s3cr3t", "github"), "header": "X-Api-Key"}


def test_auth_left_untouched_without_auth() -> None:
    value = {"h": "Bearer {{ $.auth.token }}", "k": "$.auth.token", "id": "{{ $.trigger.body.id }}"}
    assert resolve(value, CONTEXT) == {
        "h": "Bearer {{ $.auth.token }}",
        "k": "$.auth.token",
        "id": "7",
    }


def test_auth_resolves_to_secrets() -> None:
    value = {"k": "$.auth.token", "h": "Bearer {{ $.auth.token }}", "n": "$.auth.header"}
    out = resolve(value, CONTEXT, auth=AUTH)
    assert out["k"] is AUTH["token"]
    assert isinstance(out["h"], Secret)
    assert out["h"].reveal() == "Bearer s3cr3t" and out["h"].name == "github"
    assert repr(out["h"]) == "[REDACTED:github]"
    assert out["n"] == "X-Api-Key"


def test_mixed_template_with_secret() -> None:
    out = resolve("{{ $.trigger.body.id }}:{{ $.auth.token }}", CONTEXT, auth=AUTH)
    assert isinstance(out, Secret) and out.reveal() == "7:s3cr3t"


def test_missing_auth_field() -> None:
    with pytest.raises(ReferenceError_, match="the authentication has no field 'password'"):
        resolve("$.auth.password", CONTEXT, auth=AUTH)


def test_two_passes_equal_one() -> None:
    value = {
        "url": "https://x.test/{{ $.trigger.body.id }}",
        "h": "{{ $.trigger.body.email }} {{ $.auth.token }} \\{{ lit",
        "k": "$.auth.token",
        "lit": "\\$.auth.token",
        "body": "$.trigger.body",
    }
    once = resolve(value, CONTEXT, auth=AUTH)
    twice = resolve(resolve(value, CONTEXT), {}, auth=AUTH)
    assert once == twice
    assert once["h"].reveal() == "a@x.test s3cr3t {{ lit"
    assert once["lit"] == "$.auth.token"


@pytest.mark.parametrize(
    "payload",
    ["$.auth.token", "{{ $.auth.token }}", "\\{{ $.auth.token }}", "x{{ $.auth.token }}"],
)
def test_data_never_pulls_a_secret_in_the_second_pass(payload: str) -> None:
    ctx = {"trigger": {"body": {"text": payload, "nested": {"x": [payload]}}}}
    value = {
        "whole": "$.trigger.body",
        "tpl": "{{ $.trigger.body.text }}",
        "mixed": "{{ $.trigger.body.text }} {{ $.auth.token }}",
    }
    first = resolve(value, ctx)
    assert isinstance(first["whole"]["text"], ResolvedText)
    second = resolve(first, {}, auth=AUTH)
    assert second["whole"] == {"text": payload, "nested": {"x": [payload]}}
    assert second["tpl"] == payload
    assert second["mixed"].reveal() == f"{payload} s3cr3t"
    assert json.dumps(first["whole"]) == json.dumps({"text": payload, "nested": {"x": [payload]}})


# -- properties -------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)
names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True)


@given(st.dictionaries(names, json_values, min_size=1), st.data())
def test_whole_reference_returns_exactly_the_value(body: dict[str, Any], data: Any) -> None:
    key = data.draw(st.sampled_from(sorted(body)))
    ctx = {"trigger": {"body": body}, "steps": {}}
    assert resolve(f"$.trigger.body.{key}", ctx) == body[key]
    assert resolve(f'$.trigger.body["{key}"]', ctx) == body[key]
    assert resolve("$.trigger.body", ctx) == body


literal = st.text().filter(lambda s: "{{" not in s and "\\" not in s and "{" not in s[-1:])


@given(literal, literal, json_values)
def test_text_outside_templates_is_unchanged(before: str, after: str, value: Any) -> None:
    ctx = {"trigger": {"v": value}}
    out = resolve(f"{before}{{{{ $.trigger.v }}}}{after}", ctx)
    assert out.startswith(before) and out.endswith(after)
    middle = out[len(before) : len(out) - len(after)]
    expected = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                               ensure_ascii=False)  # fmt: skip
    assert middle == expected


@given(literal.filter(lambda s: not s.startswith("$.")))
def test_plain_text_is_returned_as_is(text: str) -> None:
    assert resolve(text, {}) == text
    assert find_references(text) == []


def test_second_pass_keeps_data_exact_next_to_auth() -> None:
    ctx = {"trigger": {"p": "ends with \\", "q": "$.x {{ y }}"}}
    value = "{{ $.trigger.p }}{{ $.auth.token }}|{{ $.trigger.q }}"
    first = resolve(value, ctx)
    assert first == "ends with \\{{ $.auth.token }}|$.x \\{{ y }}"  # shown: data escaped
    second = resolve(first, {}, auth=AUTH)
    assert second.reveal() == "ends with \\s3cr3t|$.x {{ y }}"
    # once stored and read back (a plain str), the text form still resolves safely
    assert resolve(str(resolve("{{ $.trigger.q }}{{ $.auth.token }}", ctx)), {}, auth=AUTH) == (
        Secret("$.x {{ y }}s3cr3t")
    )


def test_secrets_in_the_context_stay_secret() -> None:
    ctx = {"trigger": {"s": Secret("hidden", "leak")}}
    assert resolve("$.trigger.s", ctx) == Secret("hidden")
    out = resolve("x={{ $.trigger.s }}", ctx)
    assert isinstance(out, Secret) and out.reveal() == "x=hidden"
    pending = resolve("{{ $.trigger.s }} {{ $.auth.token }}", ctx)
    assert isinstance(pending, Secret) and "hidden" not in repr(pending)
