"""OAuth 2.0 through the real server against a real authorization server (npm oidc-provider on
127.0.0.1, tests/support/oauth_server.py): the browser connect (state, PKCE, callback),
tokens sealed at rest, refresh before expiry with rotated refresh tokens, refresh on 401,
a refused refresh reported clearly, and client credentials."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import oauth_server as oauth_support
from tests.support.flows import run, save
from tests.support.oauth_server import OAuthServer, OAuthTestClient
from tests.support.server import Server, make_server
from tests.support.target import Target

oauth_server = oauth_support.oauth_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, oauth_server: OAuthServer
           ) -> Iterator[Server]:
    s = make_server(Path(tmp_path_factory.mktemp("oauth")), SEALFLOW_LOG_LEVEL="debug",
                    SEALFLOW_OUTBOUND_CA_BUNDLE=str(oauth_server.ca_file))
    s.start()
    yield s
    s.stop()


def _code_auth(oauth: OAuthServer, client: OAuthTestClient, name: str) -> dict[str, Any]:
    return {
        "name": name, "type": "oauth2_code",
        "settings": {"authorize_url": oauth.authorize_url, "token_url": oauth.token_url,
                     "client_id": client.client_id, "scopes": ["openid"]},
        "secret": {"client_secret": client.client_secret},
    }


def _flow(target: Target, auth_id: str, path: str) -> dict[str, Any]:
    return {"name": f"call {path}", "trigger": {"type": "manual"},
            "steps": [{"name": "call", "connector": "http", "auth": auth_id,
                       "input": {"method": "GET", "url": f"{target.url}{path}"}}]}


def _bearer(target: Target, path: str, index: int = -1) -> str:
    return target.hits(path)[index].headers["authorization"].removeprefix("Bearer ")


def _follow_callback(server: Server, url: str) -> httpx.Response:
    assert url.startswith(f"{server.url}/oauth/callback?"), url
    with server.client() as browser:
        return browser.get(url.removeprefix(server.url))


def _connected(server: Server, oauth: OAuthServer, api: httpx.Client, name: str
               ) -> tuple[dict[str, Any], OAuthTestClient]:
    client = oauth.register_client(f"{server.url}/oauth/callback")
    made = api.post("/v1/authentications", json=_code_auth(oauth, client, name))
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["status"] == "pending"
    assert "code_challenge_method=S256" in body["authorize_url"]
    assert "state=us." in body["authorize_url"]
    page = _follow_callback(server, oauth.authorize(body["authorize_url"]))
    assert page.status_code == 200, page.text
    assert "is connected" in page.text
    return body, client


def test_connect_refresh_rotation_and_401(server: Server, oauth_server: OAuthServer,
                                          target: Target) -> None:
    _, token = server.create_account("OAuth")
    with server.client(token) as api:
        auth, client = _connected(server, oauth_server, api, "crm")
        assert api.get(f"/v1/authentications/{auth['id']}").json()["status"] == "active"
        target.script("/me", (200, {}, {"ok": True}))
        wf = save(api, _flow(target, auth["id"], "/me"))

        # Tokens of this provider live 60 s, inside the refresh margin: every call refreshes,
        # and each refresh rotates the refresh token.
        assert run(api, wf["id"])["status"] == "succeeded"
        assert run(api, wf["id"])["status"] == "succeeded"
        first, second = _bearer(target, "/me", 0), _bearer(target, "/me", 1)
        assert first != second
        assert oauth_server.introspect(second, client)["active"] is True

        # A 401 from the API: refreshed once, and the call made again with the new token.
        target.script("/strict", (401, {}, {"error": "expired"}), (200, {}, {"ok": True}))
        strict = save(api, _flow(target, auth["id"], "/strict"))
        done = run(api, strict["id"])
        assert done["status"] == "succeeded", done
        assert _bearer(target, "/strict", 0) != _bearer(target, "/strict", 1)

        # The grant revoked at the server: the refresh is refused, said clearly, and the
        # authentication asks to be connected again.
        assert oauth_server.revoke_grants(client) >= 1
        failed = run(api, wf["id"])
        assert failed["status"] == "failed"
        error = failed["steps"][0]["error"]
        assert error["code"] == "auth_refresh_failed", error
        assert "invalid_grant" in error["message"] and "crm" in error["message"]
        assert api.get(f"/v1/authentications/{auth['id']}").json()["status"] == \
            "needs_reconnect"
        again = run(api, wf["id"])["steps"][0]["error"]
        assert again["code"] == "auth_needs_reconnect"

        # Connect again: active, and runs work.
        url = api.post(f"/v1/authentications/{auth['id']}/connect").json()["authorize_url"]
        assert _follow_callback(server, oauth_server.authorize(url)).status_code == 200
        assert run(api, wf["id"])["status"] == "succeeded"
        responses = [api.get("/v1/authentications").text,
                     api.get(f"/v1/executions?workflow_id={wf['id']}").text]
        # Each connect opened the client secret and stored new tokens: both on the trail.
        trail = api.get("/v1/account/audit", params={"action": "authentication."}).json()
        connects = [(r["action"], r["details"].get("purpose") or r["details"].get("changed"))
                    for r in trail["records"] if r["actor"]["id"] == "oauth-callback"]
        assert connects == 2 * [("authentication.decrypted", "oauth code exchange"),
                                ("authentication.changed", ["oauth tokens"])]

    tokens = [_bearer(target, p, i) for p in ("/me", "/strict")
              for i in range(len(target.hits(p)))]
    stored = b"".join(p.read_bytes() for p in server.data_dir.rglob("*.db*"))
    log = server.log_path.read_bytes() if server.log_path else b""
    for value in [*tokens, client.client_secret or ""]:
        assert value.encode() not in stored
        assert value.encode() not in log
        assert all(value not in text for text in responses)


def test_callback_refusals_are_clear(server: Server, oauth_server: OAuthServer) -> None:
    _, token = server.create_account("Refusals")
    with server.client(token) as api:
        client = oauth_server.register_client(f"{server.url}/oauth/callback")
        auth = api.post("/v1/authentications",
                        json=_code_auth(oauth_server, client, "denied")).json()
        denied = _follow_callback(server, oauth_server.authorize(auth["authorize_url"],
                                                                  login_hint="deny"))
        assert denied.status_code == 400
        assert "access_denied" in denied.text

        url = api.post(f"/v1/authentications/{auth['id']}/connect").json()["authorize_url"]
        back = oauth_server.authorize(url)
        assert _follow_callback(server, back).status_code == 200
        replay = _follow_callback(server, back)  # a state works once
        assert replay.status_code == 400 and "start the connect again" in replay.text
        forged = _follow_callback(
            server, f"{server.url}/oauth/callback?state=us.{secrets.token_urlsafe(32)}&code=x")
        assert forged.status_code == 400
        code = back.split("code=", 1)[1].split("&", 1)[0]
        assert code not in replay.text and code not in forged.text


def test_client_credentials(server: Server, oauth_server: OAuthServer, target: Target) -> None:
    _, token = server.create_account("Machines")
    service = oauth_server.service_client
    with server.client(token) as api:
        made = api.post("/v1/authentications", json={
            "name": "machine", "type": "oauth2_client",
            "settings": {"token_url": oauth_server.token_url, "client_id": service.client_id,
                         "auth_method": service.auth_method,
                         "token_params": {"resource": oauth_server.resource}},
            "secret": {"client_secret": service.client_secret}})
        assert made.status_code == 201, made.text
        auth = made.json()
        assert auth["status"] == "active"
        tested = api.post(f"/v1/authentications/{auth['id']}/test").json()
        assert tested["ok"] is True, tested
        target.script("/api", (200, {}, {"ok": True}))
        wf = save(api, _flow(target, auth["id"], "/api"))
        assert run(api, wf["id"])["status"] == "succeeded"
        access = _bearer(target, "/api")
        assert access.count(".") == 2  # a JWT for the resource server
        listed = api.get(f"/v1/authentications/{auth['id']}").json()
        assert listed["expires_at"] is not None
        assert access not in str(listed) and str(service.client_secret) not in str(listed)
