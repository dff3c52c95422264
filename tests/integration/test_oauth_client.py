"""The OAuth 2.0 client (sealflow.oauth) against a real authorization server: npm
`oidc-provider` over HTTPS on 127.0.0.1 (tests/support/oauth_server.py). Only what a live
server cannot be made to do on demand (fail transiently, answer garbage, echo a secret)
goes through a wrapper around the real transport, the client's one I/O seam."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sealflow.core.errors import InvalidInput
from sealflow.core.secrets import Secret
from sealflow.oauth import (
    OAuthClientConfig,
    OAuthError,
    TokenSet,
    client_credentials,
    exchange_code,
    new_authorization,
    refresh,
)
from tests.support import oauth_server as oauth_support
from tests.support.oauth_server import OAuthServer, OAuthTestClient

# The session fixture (a real oidc-provider), bound here so pytest finds it; a plain
# `import oauth_server` would be flagged as shadowed by every test that takes it.
oauth_server = oauth_support.oauth_server

pytestmark = pytest.mark.anyio
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
REGISTERED_CALLBACK = "https://127.0.0.1:8443/oauth/callback"  # like an e2e `sealflow serve`


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class FakeClock:
    """Time stands still unless a sleep moves it; sleeps are recorded, never waited."""

    def __init__(self) -> None:
        self.current = T0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.current

    def monotonic(self) -> float:
        return (self.current - T0).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.current += timedelta(seconds=seconds)


Step = Exception | httpx.Response | Callable[[httpx.Response], httpx.Response]


class Seam(httpx.AsyncBaseTransport):
    """The real transport, with scripted steps for the first requests: an exception is
    raised, a Response is answered instead of the server's, a function rewrites the
    server's real answer. Then it forwards untouched."""

    def __init__(self, server: OAuthServer, steps: list[Step] | None = None) -> None:
        self.inner = httpx.AsyncHTTPTransport(verify=server.ssl_context())
        self.steps = list(steps or [])
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps.pop(0) if self.steps else None
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        response = await self.inner.handle_async_request(request)
        if step is not None:
            await response.aread()
            return step(response)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def seam_client(server: OAuthServer, steps: list[Step]) -> tuple[httpx.AsyncClient, Seam]:
    seam = Seam(server, steps)
    return httpx.AsyncClient(transport=seam), seam


def secret_of(client: OAuthTestClient) -> Secret | None:
    return Secret(client.client_secret, "client_secret") if client.client_secret else None


async def login(
    server: OAuthServer,
    http: httpx.AsyncClient,
    clock: FakeClock,
    client: OAuthTestClient | None = None,
) -> TokenSet:
    """The whole authorization code flow: URL, user's login and consent, code exchange."""
    client = client or server.code_client
    redirect_uri = client.redirect_uri or ""
    config = server.config(client)
    auth = new_authorization(config, redirect_uri)
    code = server.authorize_code(auth.url)
    return await exchange_code(
        config, secret_of(client), code=code, code_verifier=auth.code_verifier,
        redirect_uri=redirect_uri, http=http, clock=clock,
    )  # fmt: skip


def assert_no_leak(error: BaseException, *values: str) -> None:
    shown = f"{error} {error!r} {json.dumps(getattr(error, 'as_dict', dict)(), default=str)}"
    for value in values:
        assert value not in shown, f"a secret leaked into the error: {shown}"


# --- authorization code with PKCE -----------------------------------------------------------


async def test_authorization_url_carries_state_and_s256_challenge(
    oauth_server: OAuthServer,
) -> None:
    config = oauth_server.code_config(extra_authorize_params={"prompt": "consent"})
    first = new_authorization(config, "https://app.sealflow.test/oauth/callback")
    second = new_authorization(config, "https://app.sealflow.test/oauth/callback", state="s-1")

    query = {k: v[0] for k, v in parse_qs(urlsplit(first.url).query).items()}
    assert first.url.startswith(oauth_server.authorize_url + "?")
    assert query["response_type"] == "code"
    assert query["client_id"] == "sealflow-code"
    assert query["redirect_uri"] == "https://app.sealflow.test/oauth/callback"
    assert query["scope"] == "openid"
    assert query["state"] == first.state and len(first.state) >= 32
    assert query["code_challenge_method"] == "S256"
    digest = hashlib.sha256(first.code_verifier.encode()).digest()
    assert query["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert 43 <= len(first.code_verifier) <= 128
    assert query["prompt"] == "consent"
    assert first.code_verifier not in first.url and first.code_verifier not in repr(first)
    assert second.state == "s-1" and second.code_verifier != first.code_verifier


async def test_code_exchange_needs_the_right_verifier(oauth_server: OAuthServer) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    auth = new_authorization(config, oauth_server.code_client.redirect_uri or "")
    redirect = urlsplit(oauth_server.authorize(auth.url))
    query = {k: v[0] for k, v in parse_qs(redirect.query).items()}
    assert query["state"] == auth.state and query["iss"] == oauth_server.issuer
    wrong = new_authorization(config, "https://app.sealflow.test/oauth/callback").code_verifier

    async with oauth_server.http() as http:
        with pytest.raises(OAuthError) as refused:
            await exchange_code(
                config, client_secret, code=query["code"], code_verifier=wrong,
                redirect_uri=oauth_server.code_client.redirect_uri or "", http=http, clock=clock,
            )  # fmt: skip
        assert refused.value.error == "invalid_grant"
        assert refused.value.retryable is False and refused.value.code == "oauth_failed"
        assert oauth_server.token_url in str(refused.value)
        assert_no_leak(refused.value, query["code"], wrong, client_secret.reveal())

        tokens = await login(oauth_server, http, clock)
    assert tokens.access_token.reveal() and tokens.refresh_token and tokens.id_token
    assert tokens.token_type == "Bearer" and tokens.scope == "openid"
    # expires_at comes from the injected clock (not the machine's) plus expires_in.
    assert tokens.expires_at == T0 + timedelta(seconds=oauth_server.access_token_ttl)
    assert tokens.access_token.reveal() not in repr(tokens)
    assert TokenSet.from_fields(tokens.to_fields()) == tokens
    assert oauth_server.introspect(tokens.access_token.reveal())["active"] is True


async def test_public_client_uses_pkce_without_a_secret(oauth_server: OAuthServer) -> None:
    assert oauth_server.config(oauth_server.public_client).auth_method == "none"
    async with oauth_server.http() as http:
        tokens = await login(oauth_server, http, FakeClock(), oauth_server.public_client)
    assert tokens.access_token.reveal() and tokens.refresh_token is not None


async def test_a_user_who_refuses_comes_back_with_access_denied(
    oauth_server: OAuthServer,
) -> None:
    auth = new_authorization(
        oauth_server.code_config(), oauth_server.code_client.redirect_uri or ""
    )
    query = parse_qs(urlsplit(oauth_server.authorize(auth.url, login_hint="deny")).query)
    assert query["error"] == ["access_denied"] and query["state"] == [auth.state]


async def test_a_registered_client_can_use_a_loopback_callback(oauth_server: OAuthServer) -> None:
    # What an end-to-end test does for a `sealflow serve` whose port it learns late.
    client = oauth_server.register_client(REGISTERED_CALLBACK)
    assert client.client_id != oauth_server.code_client.client_id
    async with oauth_server.http() as http:
        tokens = await login(oauth_server, http, FakeClock(), client)
    assert tokens.refresh_token is not None


# --- refresh ---------------------------------------------------------------------------------


async def test_refresh_rotates_and_the_old_token_is_then_refused(
    oauth_server: OAuthServer,
) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as http:
        first = await login(oauth_server, http, clock)
        assert first.refresh_token is not None
        clock.current += timedelta(minutes=5)

        second = await refresh(config, client_secret, first.refresh_token, http=http, clock=clock)
        assert second.refresh_token is not None
        assert second.refresh_token != first.refresh_token
        assert second.access_token != first.access_token
        assert second.expires_at == clock.current + timedelta(seconds=60)

        with pytest.raises(OAuthError) as refused:
            await refresh(config, client_secret, first.refresh_token, http=http, clock=clock)
    assert refused.value.error == "invalid_grant" and refused.value.retryable is False
    assert clock.sleeps == []  # an OAuth error answer is not retried
    assert_no_leak(refused.value, first.refresh_token.reveal(), client_secret.reveal())


async def test_a_revoked_grant_fails_refresh_clearly_and_at_once(
    oauth_server: OAuthServer,
) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as setup:
        tokens = await login(oauth_server, setup, clock)
    assert tokens.refresh_token is not None
    oauth_server.revoke(tokens.refresh_token.reveal())

    http, seam = seam_client(oauth_server, [])
    async with http:
        with pytest.raises(OAuthError) as failed:
            await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
    error = failed.value
    assert len(seam.requests) == 1 and clock.sleeps == []
    assert (error.error, error.retryable, error.status, error.attempts) == (
        "invalid_grant",
        False,
        400,
        1,
    )
    assert str(error).startswith(f"token endpoint {oauth_server.token_url} answered HTTP 400")
    assert error.as_dict()["code"] == "oauth_failed"
    assert_no_leak(error, tokens.refresh_token.reveal(), client_secret.reveal())


async def test_revoking_a_clients_grants_fails_its_refresh(oauth_server: OAuthServer) -> None:
    # The fixture's way to break a refresh without knowing the token (e2e: it is sealed).
    client, clock = oauth_server.register_client(REGISTERED_CALLBACK), FakeClock()
    async with oauth_server.http() as http:
        tokens = await login(oauth_server, http, clock, client)
        assert tokens.refresh_token is not None
        assert oauth_server.revoke_grants(client) == 1
        with pytest.raises(OAuthError) as failed:
            await refresh(
                oauth_server.config(client), secret_of(client), tokens.refresh_token,
                http=http, clock=clock,
            )  # fmt: skip
    assert failed.value.error == "invalid_grant" and failed.value.retryable is False
    assert oauth_server.introspect(tokens.access_token.reveal(), client)["active"] is False


async def test_refresh_is_retried_twice_on_transient_failures(oauth_server: OAuthServer) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as setup:
        tokens = await login(oauth_server, setup, clock)
    assert tokens.refresh_token is not None

    http, seam = seam_client(
        oauth_server,
        [httpx.Response(503, json={"error": "temporarily_unavailable"}),
         httpx.ConnectError("connection refused")],
    )  # fmt: skip
    async with http:
        renewed = await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
    assert len(seam.requests) == 3  # two failures, then the real server answered
    assert len(clock.sleeps) == 2 and all(0 < s <= 4 for s in clock.sleeps)
    assert renewed.refresh_token is not None and renewed.refresh_token != tokens.refresh_token
    # expires_at counts from when the successful attempt was sent, after the backoff.
    assert renewed.expires_at == clock.current + timedelta(seconds=60)


async def test_refresh_gives_up_after_three_transient_failures(oauth_server: OAuthServer) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as setup:
        tokens = await login(oauth_server, setup, clock)
    assert tokens.refresh_token is not None
    value = tokens.refresh_token.reveal()

    http, seam = seam_client(
        oauth_server,
        [httpx.Response(503), httpx.ReadTimeout("read timed out"),
         httpx.ConnectError(f"reset while sending refresh_token={value}")],
    )  # fmt: skip
    async with http:
        with pytest.raises(OAuthError) as failed:
            await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
        assert len(seam.requests) == 3 and len(clock.sleeps) == 2
        error = failed.value
        assert error.retryable is True and error.error is None and error.attempts == 3
        assert "after 3 attempts" in str(error) and oauth_server.token_url in str(error)
        assert_no_leak(error, value, client_secret.reveal())
        # The failures never reached the server, so the refresh token is still good.
        again = await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
    assert again.access_token.reveal()


async def test_a_429_is_retried_after_the_servers_retry_after(oauth_server: OAuthServer) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as setup:
        tokens = await login(oauth_server, setup, clock)
    assert tokens.refresh_token is not None

    http, seam = seam_client(oauth_server, [httpx.Response(429, headers={"retry-after": "3"})])
    async with http:
        renewed = await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
    assert len(seam.requests) == 2 and clock.sleeps == [3.0]
    assert renewed.refresh_token != tokens.refresh_token


async def test_refresh_keeps_the_old_token_when_the_server_sends_none(
    oauth_server: OAuthServer,
) -> None:
    config, clock = oauth_server.code_config(), FakeClock()
    client_secret = Secret(oauth_server.code_client.client_secret or "")
    async with oauth_server.http() as setup:
        tokens = await login(oauth_server, setup, clock)
    assert tokens.refresh_token is not None

    def without_refresh_token(real: httpx.Response) -> httpx.Response:
        body = {k: v for k, v in real.json().items() if k != "refresh_token"}
        return httpx.Response(real.status_code, json=body)

    http, _ = seam_client(oauth_server, [without_refresh_token])
    async with http:
        renewed = await refresh(config, client_secret, tokens.refresh_token, http=http, clock=clock)
    assert renewed.refresh_token == tokens.refresh_token
    assert renewed.access_token != tokens.access_token


# --- client credentials ----------------------------------------------------------------------


async def test_client_credentials_gives_an_access_token(oauth_server: OAuthServer) -> None:
    client_secret = Secret(oauth_server.service_client.client_secret or "")
    clock = FakeClock()
    async with oauth_server.http() as http:
        opaque = await client_credentials(
            oauth_server.service_config(), client_secret, http=http, clock=clock
        )
        for_api = await client_credentials(
            oauth_server.service_config(extra_token_params={"resource": oauth_server.resource}),
            client_secret, http=http, clock=clock,
        )  # fmt: skip
    assert opaque.access_token.reveal() and opaque.refresh_token is None
    assert opaque.expires_at == T0 + timedelta(seconds=60)
    # With a resource indicator the provider issues a JWT for that audience and its scopes.
    payload = for_api.access_token.reveal().split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["aud"] == oauth_server.resource and claims["client_id"] == "sealflow-service"
    assert for_api.scope == "workflows:read workflows:write"


async def test_a_wrong_client_secret_is_invalid_client(oauth_server: OAuthServer) -> None:
    canary = "canary-client-secret-8d1f0c"
    async with oauth_server.http() as http:
        with pytest.raises(OAuthError) as refused:
            await client_credentials(
                oauth_server.service_config(), Secret(canary), http=http, clock=FakeClock()
            )
    assert refused.value.error == "invalid_client" and refused.value.retryable is False
    assert refused.value.status == 401
    assert_no_leak(refused.value, canary)


# --- malformed answers and refused configurations --------------------------------------------


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}),
         "not a JSON object (text/html)"),
        (httpx.Response(200, json={"token_type": "Bearer", "expires_in": 60}),
         "without a usable token: the answer has no access_token"),
        (httpx.Response(200, json={"access_token": "a", "expires_in": "soon"}),
         "expires_in is not a number of seconds"),
        (httpx.Response(302, headers={"location": "https://elsewhere.test/token"}),
         "answered with a redirect"),
    ],
)  # fmt: skip
async def test_malformed_answers_fail_clearly_and_for_good(
    oauth_server: OAuthServer, answer: httpx.Response, says: str
) -> None:
    clock = FakeClock()
    http, seam = seam_client(oauth_server, [answer])
    async with http:
        with pytest.raises(OAuthError) as failed:
            await refresh(
                oauth_server.code_config(), Secret("s"), Secret("r"), http=http, clock=clock
            )
    assert says in str(failed.value) and failed.value.retryable is False
    assert len(seam.requests) == 1 and clock.sleeps == []


async def test_no_secret_reaches_an_error_even_when_the_server_echoes_it(
    oauth_server: OAuthServer,
) -> None:
    code, verifier = "canary-code-5b2e91", "canary-verifier-" + "v" * 40
    client_secret = Secret("canary-secret-77aa01")
    echo = httpx.Response(
        400,
        json={"error": "invalid_grant",
              "error_description": f"code {code} / {verifier} / {client_secret.reveal()}"},
    )  # fmt: skip
    http, _ = seam_client(oauth_server, [echo])
    async with http:
        with pytest.raises(OAuthError) as failed:
            await exchange_code(
                oauth_server.code_config(), client_secret, code=code, code_verifier=verifier,
                redirect_uri="https://app.sealflow.test/oauth/callback", http=http,
                clock=FakeClock(),
            )  # fmt: skip
    assert "[REDACTED]" in str(failed.value) and failed.value.error == "invalid_grant"
    assert_no_leak(failed.value, code, verifier, client_secret.reveal())


async def test_an_untrusted_certificate_is_not_retried(oauth_server: OAuthServer) -> None:
    # A client that does not trust the test CA: a real handshake that fails for good.
    clock = FakeClock()
    async with httpx.AsyncClient() as http:
        with pytest.raises(OAuthError) as failed:
            await refresh(
                oauth_server.code_config(), Secret("s"), Secret("r"), http=http, clock=clock
            )
    assert "TLS certificate verification failed" in str(failed.value)
    assert failed.value.retryable is False and clock.sleeps == []


@pytest.mark.parametrize("field", ["token_url", "authorize_url"])
async def test_plain_http_endpoints_are_refused(field: str) -> None:
    values = {"token_url": "https://idp.test/token", "authorize_url": "https://idp.test/auth"}
    values[field] = "http://idp.test/x"
    with pytest.raises(InvalidInput) as refused:
        OAuthClientConfig(client_id="c", **values)  # type: ignore[arg-type]
    assert field in str(refused.value) and "https" in str(refused.value)
    assert refused.value.issues[0].path == f"$.{field}"


async def test_pkce_parameters_cannot_be_overridden() -> None:
    with pytest.raises(InvalidInput) as refused:
        OAuthClientConfig(
            token_url="https://idp.test/token", client_id="c",
            extra_authorize_params={"code_challenge_method": "plain"},
        )  # fmt: skip
    assert refused.value.issues[0].path == "$.extra_authorize_params.code_challenge_method"
