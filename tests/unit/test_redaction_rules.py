"""Field-name rules, the JSON walk, an account's settings, error texts and the shared STATIC
redactor."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealflow.core.errors import InvalidInput
from sealflow.core.secrets import Secret
from sealflow.redaction import (
    ALWAYS_MASKED_HEADERS,
    DEFAULT_FIELD_NAMES,
    STATIC,
    RedactionPolicy,
    Redactor,
)
from sealflow.redaction.rules import matches, normalise

R = "[REDACTED]"


@pytest.mark.parametrize(
    ("key", "normal"),
    [
        ("password", "password"),
        ("PASSWORD", "password"),
        ("X-Api-Key", "x_api_key"),
        ("x_api_key", "x_api_key"),
        ("apiKey", "api_key"),
        ("APIKey", "api_key"),
        ("XApiKey", "x_api_key"),
        ("OAuthToken", "o_auth_token"),
        ("Set-Cookie", "set_cookie"),
        ("db.password", "db_password"),
        ("  Client Secret ", "client_secret"),
        ("--", ""),
    ],
)
def test_normalise(key: str, normal: str) -> None:
    assert normalise(key) == normal


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "Password",
        "passwd",
        "db_password",
        "userPassword",
        "secret",
        "client_secret",
        "clientSecret",
        "token",
        "access_token",
        "refreshToken",
        "id_token",
        "X-Auth-Token",
        "api_key",
        "apikey",
        "apiKey",
        "X-API-KEY",
        "authorization",
        "Proxy-Authorization",
        "cookie",
        "Set-Cookie",
        "private_key",
        "privateKey",
        "ssh_private_key",
        "x-api-key",
    ],
)
def test_sensitive_keys(key: str) -> None:
    assert matches(key, RedactionPolicy.default().field_names)


@pytest.mark.parametrize(
    "key",
    [
        "token_type",
        "max_tokens",
        "tokens_used",
        "password_policy",
        "secretary",
        "author",
        "cookie_consent",
        "keys",
        "key",
        "name",
        "passwordless",
        "api_key_id",
    ],
)
def test_ordinary_keys(key: str) -> None:
    assert not matches(key, RedactionPolicy.default().field_names)


def test_value_walk_masks_by_field_name_whatever_the_type() -> None:
    body = {
        "user": "ann",
        "password": "pw",
        "nested": {
            "apiKey": {"id": 1, "key": "k"},
            "token": 12345,
            "Cookie": ["a", "b"],
            "private_key": None,
        },
        "token_type": "Bearer",
        "items": [{"client_secret": True}, ("tuple", "kept")],
    }
    before = copy.deepcopy(body)
    assert Redactor().value(body) == {
        "user": "ann",
        "password": R,
        "nested": {"apiKey": R, "token": R, "Cookie": R, "private_key": R},
        "token_type": "Bearer",
        "items": [{"client_secret": R}, ("tuple", "kept")],
    }
    assert body == before  # never mutated


def test_recorded_http_headers_always_masked() -> None:
    recorded = {
        "request": {
            "headers": {
                "Authorization": "Bearer abc",
                "Proxy-Authorization": "x",
                "Cookie": "sid=1",
                "X-Api-Key": "k",
                "Accept": "*/*",
            }
        },
        "response": {
            "headers": [
                ["set-cookie", "sid=2"],
                ["content-type", "text/plain"],
                ("Set-Cookie", "sid=3"),
            ],
            "har": [{"name": "Cookie", "value": "sid=4"}, {"name": "Accept", "value": "*/*"}],
        },
    }
    # An account's policy can add names, never drop these.
    policy = RedactionPolicy(field_names=frozenset({"customer_ref"}))
    assert ALWAYS_MASKED_HEADERS <= policy.field_names
    assert Redactor(policy).value(recorded) == {
        "request": {
            "headers": {
                "Authorization": R,
                "Proxy-Authorization": R,
                "Cookie": R,
                "X-Api-Key": R,
                "Accept": "*/*",
            }
        },
        "response": {
            "headers": [["set-cookie", R], ["content-type", "text/plain"], ("Set-Cookie", R)],
            "har": [{"name": "Cookie", "value": R}, {"name": "Accept", "value": "*/*"}],
        },
    }


def test_strings_keys_and_secret_objects_in_values() -> None:
    r = Redactor()
    r.add_secret("crm", "crm-token-123456")
    r.add_secret("other", "other-token-654321")  # added after keys were seen: memo cleared
    out = r.value(
        {
            "crm-token-123456": "x",
            "note": "sent crm-token-123456",
            "secret_obj": Secret("v", "crm"),
            "n": 1.5,
            "ok": True,
            "nothing": None,
        }
    )
    assert out == {
        "[REDACTED:crm]": "x",
        "note": "sent [REDACTED:crm]",
        "secret_obj": "[REDACTED:crm]",
        "n": 1.5,
        "ok": True,
        "nothing": None,
    }
    assert r.value({"other-token-654321": 1}) == {"[REDACTED:other]": 1}
    r.add_secret("late", "late-token-777777")
    assert r.value({"late-token-777777": 1}) == {"[REDACTED:late]": 1}


@settings(deadline=None, max_examples=100)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_value_walk_changes_nothing_without_secrets_or_sensitive_keys(v: object) -> None:
    """No known values, no sensitive key: any JSON value comes back equal (and a copy)."""

    def sensitive(x: object) -> bool:
        if isinstance(x, dict):
            return any(matches(k, DEFAULT_FIELD_NAMES) or sensitive(i) for k, i in x.items())
        if isinstance(x, list):
            return any(sensitive(i) for i in x) or (
                len(x) == 2 and isinstance(x[0], str) and matches(x[0], DEFAULT_FIELD_NAMES)
            )
        return False

    if not sensitive(v):
        assert Redactor().value(v) == v


def test_extra_field_names_from_settings() -> None:
    policy = RedactionPolicy.from_settings({"extra_field_names": ["customer-ref", "SSN"]})
    r = Redactor(policy)
    assert r.value({"customer_ref": "c-1", "CustomerRef": "c-2", "ssn": 1, "name": "n"}) == {
        "customer_ref": R,
        "CustomerRef": R,
        "ssn": R,
        "name": "n",
    }
    assert RedactionPolicy.from_settings(None) == RedactionPolicy.default()
    assert RedactionPolicy.from_settings({}) == RedactionPolicy.default()


@pytest.mark.parametrize(
    ("settings_", "paths"),
    [
        ([], ["$.redaction"]),
        ({"extra_field_names": "password"}, ["$.redaction.extra_field_names"]),
        (
            {"extra_field_names": ["ok", 3, "", "x" * 101, "--"]},
            [
                "$.redaction.extra_field_names[1]",
                "$.redaction.extra_field_names[2]",
                "$.redaction.extra_field_names[3]",
                "$.redaction.extra_field_names[4]",
            ],
        ),
        ({"extra_field_names": ["n"] * 201}, ["$.redaction.extra_field_names"]),
        (
            {"disabled_detectors": ["card", "nope", None]},
            ["$.redaction.disabled_detectors[1]", "$.redaction.disabled_detectors[2]"],
        ),
        ({"disabled_detectors": {"card": True}}, ["$.redaction.disabled_detectors"]),
        ({"extra": 1}, ["$.redaction.extra"]),
    ],
)
def test_invalid_settings_name_each_fault(settings_: object, paths: list[str]) -> None:
    with pytest.raises(InvalidInput) as err:
        RedactionPolicy.from_settings(settings_)  # type: ignore[arg-type]
    assert [i.path for i in err.value.issues] == paths


def test_exception_text_masks_message_causes_and_traceback() -> None:
    r = Redactor()
    r.add_secret("db", "db-password-xyz-123")

    def connect() -> None:
        try:
            raise OSError("auth failed for db-password-xyz-123")
        except OSError as e:
            raise RuntimeError("step failed: token=" + "db-password-xyz-123") from e

    with pytest.raises(RuntimeError) as info:
        connect()
    text = r.exception_text(info.value)
    assert "db-password-xyz-123" not in text
    assert "Traceback" in text and "connect" in text
    assert "OSError: auth failed for [REDACTED:db]" in text
    assert "RuntimeError: step failed: token=[REDACTED:db]" in text


def test_static_has_rules_and_detectors_but_no_secrets() -> None:
    assert STATIC.secret_count == 0
    assert STATIC.value({"password": "p", "s": "AKIAIOSFODNN7EXAMPLE"}) == {
        "password": R,
        "s": "[REDACTED:aws]",
    }
    with pytest.raises(TypeError):
        STATIC.add_secret("x", "some-secret-value")
    with pytest.raises(TypeError):
        STATIC.add_basic_pair("x", "user", "some-password")
    assert STATIC.text("short") == "short"


def test_many_distinct_keys_and_non_string_keys() -> None:
    r = Redactor()
    r.add_secret("k", "key-secret-000001")
    wide = {f"field_{i}": i for i in range(5000)}  # more keys than the memo holds
    wide["key-secret-000001"] = 0
    out = r.value(wide)
    assert out["field_4999"] == 4999 and out["[REDACTED:k]"] == 0 and len(out) == 5001
    assert r.value({1: "key-secret-000001", None: [2]}) == {1: "[REDACTED:k]", None: [2]}
