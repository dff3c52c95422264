"""Single sign-on with OpenID Connect (SPEC I4) through the real server against a real provider
(npm oidc-provider on 127.0.0.1, tests/support/oauth_server.py): the login end to end (state,
PKCE, nonce, id_token signed ES256 and checked against the provider's JWKS), a member made
just in time with the default role and reused at the next login, tampered states and nonces
refused, and "SSO required" refusing passwords."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.e2e.test_login import PASSWORD, invite_and_accept, log_in
from tests.support import oauth_server as oauth_support
from tests.support.oauth_server import OAuthServer
from tests.support.server import Server, make_server

oauth_server = oauth_support.oauth_server
COOKIE = "__Host-sealflow_session"
CALLBACK = "/v1/auth/sso/callback"
BROWSER = "__Host-sealflow_sso"


class Login(str):
    """The provider's authorize URL, with the browser-binding cookie its start set."""

    browser: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, oauth_server: OAuthServer
           ) -> Iterator[Server]:
    s = make_server(Path(tmp_path_factory.mktemp("sso")),
                    SEALFLOW_OUTBOUND_CA_BUNDLE=str(oauth_server.ca_file))
    s.start()
    yield s
    s.stop()


def _configure(server: Server, oauth: OAuthServer, token: str, **extra: object) -> None:
    client = oauth.register_client(f"{server.url}{CALLBACK}")
    with server.client(token) as api:
        r = api.put("/v1/account/sso", json={
            "issuer": oauth.issuer, "client_id": client.client_id,
            "client_secret": client.client_secret, "default_role": "builder", **extra})
        assert r.status_code == 200, r.text
        shown = api.get("/v1/account/sso")
        assert shown.status_code == 200 and shown.json()["issuer"] == oauth.issuer
        assert str(client.client_secret) not in shown.text


def _start(server: Server, account_id: str) -> Login:
    with server.client() as browser:
        r = browser.get("/v1/auth/sso/start", params={"account": account_id})
    assert r.status_code == 302, r.text
    url = Login(r.headers["location"])
    url.browser = r.cookies[BROWSER]
    query = dict(parse_qsl(urlsplit(url).query))
    assert query["code_challenge_method"] == "S256" and query["state"].startswith("us.")
    assert query["nonce"] and set(query["scope"].split()) == {"openid", "email", "profile"}
    return url


def _callback(server: Server, url: str, started: Login | None) -> httpx.Response:
    """The provider's redirect followed by the browser that started `started`."""
    assert url.startswith(f"{server.url}{CALLBACK}?"), url
    with server.client() as browser:
        if started is not None:
            browser.headers["Cookie"] = f"{BROWSER}={started.browser}"
        return browser.get(url.removeprefix(server.url))


def _login(server: Server, oauth: OAuthServer, account_id: str, hint: str) -> httpx.Response:
    started = _start(server, account_id)
    return _callback(server, oauth.authorize(started, login_hint=hint), started)


def _me(server: Server, r: httpx.Response) -> httpx.Response:
    assert r.status_code == 303, r.text
    with server.client() as c:
        c.headers["Cookie"] = f"{COOKIE}={r.cookies[COOKIE]}"
        return c.get("/v1/me")


def _with(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = urlencode({**dict(parse_qsl(parts.query)), **params})
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def test_sso_login_end_to_end_with_a_member_made_just_in_time(
        server: Server, oauth_server: OAuthServer) -> None:
    account_id, token = server.create_account("SSO")
    _configure(server, oauth_server, token)

    started = _start(server, account_id)
    back = oauth_server.authorize(started, login_hint="grace@example.com")
    first = _callback(server, back, started)
    morsel = first.headers["set-cookie"]
    assert "Secure" in morsel and "HttpOnly" in morsel and "samesite=lax" in morsel.lower()
    me = _me(server, first)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["account_id"] == account_id and body["role"] == "builder"
    assert body["email"] == "grace@example.com" and body["name"] == "Test grace"

    again = _me(server, _login(server, oauth_server, account_id, "grace@example.com"))
    assert again.json()["user_id"] == body["user_id"]  # the same member, not a new one
    with server.client(token) as api:
        members = api.get("/v1/members").json()
    assert [m["email"] for m in members] == ["grace@example.com"]

    # A used state works once; the code is never echoed.
    replay = _callback(server, back, started)
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    assert replay.status_code == 400 and code not in replay.text

    # On the account's audit trail: the provider set up, and both logins by SSO (A1).
    with server.client(token) as api:
        trail = api.get("/v1/account/audit").json()["records"]
    logins = [r for r in trail if r["action"] == "login.succeeded"]
    assert [r["details"]["method"] for r in logins] == ["sso", "sso"]
    assert {r["actor"]["id"] for r in logins} == {body["user_id"]}
    assert any(r["action"] == "settings.changed" and r["details"]["section"] == "sso"
               for r in trail)
    joined = [r for r in trail if r["action"] == "member.joined"]  # made just in time
    assert [(r["target"], r["details"]["via"]) for r in joined] == [
        (f"user:{body['user_id']}", "sso")]


def test_tampered_state_and_nonce_are_refused(server: Server, oauth_server: OAuthServer
                                              ) -> None:
    account_id, token = server.create_account("Tamper")
    _configure(server, oauth_server, token)

    # A state changed on the way back: unknown.
    started = _start(server, account_id)
    back = oauth_server.authorize(started)
    state = dict(parse_qsl(urlsplit(back).query))["state"]
    forged = _callback(server, _with(back, state=state[:-2] + ("AA" if state[-2:] != "AA"
                                                                else "BB")), started)
    assert forged.status_code == 400 and "start the login again" in forged.text
    # One flow's code with another flow's state: that state's PKCE verifier does not fit.
    other = _start(server, account_id)
    swapped = _callback(server, _with(back, state=dict(parse_qsl(urlsplit(other).query))[
        "state"]), other)
    assert swapped.status_code == 400 and COOKIE not in swapped.headers.get("set-cookie", "")

    # The nonce changed in the authorization request: the id_token carries another nonce
    # than the one sealflow kept, and is refused.
    started = _start(server, account_id)
    refused = _callback(server, oauth_server.authorize(_with(started, nonce="not-the-nonce")),
                        started)
    assert refused.status_code == 400, refused.text
    assert "nonce" in refused.text
    assert COOKIE not in refused.headers.get("set-cookie", "")
    with server.client(token) as api:
        failed = api.get("/v1/account/audit", params={"action": "login.failed"}).json()
    assert any(r["details"]["factor"] == "sso" and "nonce" in r["details"]["reason"]
               for r in failed["records"])

    # Finished in another browser than the one that started it (login CSRF): refused.
    started = _start(server, account_id)
    elsewhere = _callback(server, oauth_server.authorize(started), None)
    assert elsewhere.status_code == 400 and "another browser" in elsewhere.text
    started, stranger = _start(server, account_id), _start(server, account_id)
    crossed = _callback(server, oauth_server.authorize(started), stranger)
    assert crossed.status_code == 400 and "another browser" in crossed.text

    # A provider that is not https, or whose discovery does not answer, is refused.
    with server.client(token) as api:
        for issuer in ("http://127.0.0.1:1", "https://127.0.0.1:1"):
            bad = api.put("/v1/account/sso", json={"issuer": issuer, "client_id": "c",
                                                   "client_secret": "s"})
            assert bad.status_code == 422, bad.text
            assert bad.json()["error"]["issues"][0]["path"] == "$.issuer", bad.text
        owner = api.put("/v1/account/sso", json={
            "issuer": oauth_server.issuer, "client_id": "c", "client_secret": "s",
            "default_role": "owner"})
        assert owner.status_code == 422

    # No code, and no state.
    started = _start(server, account_id)
    no_code = _callback(server, _with(oauth_server.authorize(started), code=""), started)
    assert no_code.status_code == 400
    with server.client() as browser:
        assert browser.get(CALLBACK).status_code == 400
        assert browser.get("/v1/auth/sso/start", params={"account": "nope"}).status_code == 400


def test_sso_required_refuses_passwords(server: Server, oauth_server: OAuthServer) -> None:
    account_id, token = server.create_account("Strict")
    invite_and_accept(server, token, "pat@example.com", PASSWORD)
    assert log_in(server, "pat@example.com", PASSWORD).status_code == 200
    _configure(server, oauth_server, token, required=True)

    refused = log_in(server, "pat@example.com", PASSWORD)
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "sso_required"
    assert f"/v1/auth/sso/start?account={account_id}" in error["message"]
    assert COOKIE not in refused.headers.get("set-cookie", "")
    # A wrong password learns nothing about the policy.
    wrong = log_in(server, "pat@example.com", "not the password at all")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthenticated"

    # The same person through SSO: the existing member (by verified e-mail), its role kept.
    me = _me(server, _login(server, oauth_server, account_id, "pat@example.com"))
    assert me.json()["email"] == "pat@example.com" and me.json()["role"] == "owner"

    with server.client(token) as api:
        assert api.delete("/v1/account/sso").status_code == 204
        assert api.get("/v1/account/sso").status_code == 404
    assert log_in(server, "pat@example.com", PASSWORD).status_code == 200
