"""The rules a stored authentication must pass (core.authentication_types) and the step
interceptor that puts one on a call (engine.interceptors.AuthenticationInterceptor)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sealflow.connectors.base import Credential
from sealflow.core.authentication_types import (
    MIN_SECRET_CHARS,
    TYPES,
    check_secret,
    check_settings,
    fingerprint,
)
from sealflow.core.errors import ConnectorError
from sealflow.core.retry import RetryPolicy
from sealflow.core.secrets import Secret
from sealflow.engine.interceptors import AuthenticationInterceptor, StepCall


def test_short_secrets_are_refused_by_path_without_the_value() -> None:
    issues = check_secret(TYPES["bearer"], {"token": "1234567"}, {})
    assert [(i.path, "at least 8" in i.message) for i in issues] == [("$.secret.token", True)]
    assert all("1234567" not in i.message for i in issues)
    assert check_secret(TYPES["bearer"], {"token": "12345678"}, {}) == []


def test_basic_username_may_be_short_but_not_hold_a_colon() -> None:
    basic = TYPES["basic"]
    assert check_secret(basic, {"username": "ada", "password": "p" * MIN_SECRET_CHARS}, {}) == []
    issues = check_secret(basic, {"username": "a:b", "password": "p" * 8}, {})
    assert [i.path for i in issues] == ["$.secret.username"]


def test_oauth_settings_need_https_and_public_clients_need_no_secret() -> None:
    code = TYPES["oauth2_code"]
    settings = {"authorize_url": "https://as.test/auth", "token_url": "http://as.test/token",
                "client_id": "c"}
    assert [i.path for i in check_settings(code, settings)] == ["$.settings.token_url"]
    public = {**settings, "token_url": "https://as.test/token", "auth_method": "none"}
    assert check_settings(code, public) == []
    assert check_secret(code, {}, public) == []
    assert [i.path for i in check_secret(code, {}, {**public, "auth_method":
                                                    "client_secret_basic"})] == [
        "$.secret.client_secret"]
    reserved = check_settings(code, {**public, "authorize_params": {"state": "x"}})
    assert "sealflow sets those" in reserved[0].message


@given(st.dictionaries(st.sampled_from(["key", "token", "password", "username"]),
                       st.text(min_size=8, max_size=40), min_size=1))
def test_fingerprint_is_stable_short_and_does_not_contain_the_secret(secret: dict) -> None:
    print_ = fingerprint(secret)
    assert print_ == fingerprint(dict(reversed(list(secret.items()))))
    assert len(print_) == len("sha256:") + 19
    assert all(value not in print_ for value in secret.values() if len(value) >= 8)
    assert fingerprint({**secret, "access_token": "changes-every-refresh"}) == print_


class _Provider:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.calls: list[bool] = []

    async def get(self, region: str, account_id: str, auth_id: str, *,
                  force_refresh: bool = False, used_by: object = None) -> Credential:
        self.calls.append(force_refresh)
        token = "fresh-token" if force_refresh else "stale-token"
        return Credential(auth_id, "svc", self.kind, {"access_token": Secret(token)})


def _call(auth_types: tuple[str, ...]) -> StepCall:
    from sealflow.core.workflows import Step

    step = Step(name="s", connector="http", operation="request", input={}, auth="a1",
                timeout=None, retry=RetryPolicy(), on_error="stop", error_next=None,
                next=None, then=None, else_=None, cases={}, default=None, body=None,
                control=None)
    return StepCall(region="us", account_id="acc", execution_id="e", path="s", step=step,
                    operation=None, input={"t": "$.auth.access_token"},  # type: ignore[arg-type]
                    attempt=1, ctx=None, auth_types=auth_types)


def test_an_oauth_401_is_refreshed_once_and_retried() -> None:
    provider = _Provider("oauth2_code")
    seen: list[Any] = []

    async def proceed(call: StepCall) -> Any:
        token = call.credential.fields["access_token"]  # type: ignore[union-attr]
        seen.append(call.input["t"])
        if token.reveal() == "stale-token":
            raise ConnectorError("HTTP 401", code="http_401", details={"status": 401})
        return {"ok": True}

    out = asyncio.run(AuthenticationInterceptor(provider)(_call(("oauth2_code",)), proceed))
    assert out == {"ok": True}
    assert provider.calls == [False, True]
    assert [s.reveal() for s in seen] == ["stale-token", "fresh-token"]


def test_a_static_401_is_not_retried_and_a_wrong_type_is_refused() -> None:
    provider = _Provider("bearer")

    async def proceed(call: StepCall) -> Any:
        raise ConnectorError("HTTP 401", code="http_401", details={"status": 401})

    with pytest.raises(ConnectorError) as err:
        asyncio.run(AuthenticationInterceptor(provider)(_call(("bearer",)), proceed))
    assert err.value.code == "http_401" and provider.calls == [False]
    with pytest.raises(ConnectorError) as wrong:
        asyncio.run(AuthenticationInterceptor(provider)(
            _call(("api_key",)), proceed))
    assert wrong.value.code == "auth_unsupported"
