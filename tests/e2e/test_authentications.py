"""Stored authentications through the real server (S1, S2, S3): every static type is injected
into a real HTTP call, and the canary secrets never come back: not in an API response, not
in the database files (WAL included), the key store or the server log. Write-only, personal
versus shared, replace, delete, test, moved ciphertexts."""

from __future__ import annotations

import base64
import secrets
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.flows import run, save
from tests.support.server import Server, make_server
from tests.support.target import Target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = make_server(Path(tmp_path_factory.mktemp("auths")), SEALFLOW_LOG_LEVEL="debug")
    s.start()
    yield s
    s.stop()


class Recording:
    """An API client that keeps every response body, to search them for canaries."""

    def __init__(self, client: httpx.Client) -> None:
        self.client = client
        self.bodies: list[bytes] = []

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.client, method)

        def recorded(*args: Any, **kw: Any) -> httpx.Response:
            response = call(*args, **kw)
            self.bodies.append(response.content + str(response.headers).encode())
            return response

        return recorded


def canary(tag: str) -> str:
    return f"CANARY{tag}{secrets.token_hex(10)}"


def _flow(target: Target, auth_id: str, path: str) -> dict[str, Any]:
    target.script(path, (200, {}, {"ok": True}))
    return {
        "name": f"call {path}",
        "trigger": {"type": "manual"},
        "steps": [{"name": "call", "connector": "http", "auth": auth_id,
                   "input": {"method": "GET", "url": f"{target.url}{path}"}}],
    }


def _create(api: Recording, **body: Any) -> dict[str, Any]:
    r = api.post("/v1/authentications", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def _stored_bytes(server: Server) -> bytes:
    out = b""
    for path in [*server.data_dir.glob("*.db*"), *(server.data_dir / "keys").glob("*")]:
        out += path.read_bytes()
    return out


def test_each_type_is_injected_and_no_canary_comes_back(server: Server, target: Target) -> None:
    _, token = server.create_account("Auths")
    key, bearer, user, password = (canary(t) for t in ("KEY", "BEARER", "USER", "PASS"))
    query_key = canary("QUERY")
    with server.client(token) as client:
        api = Recording(client)
        made = {
            "header": _create(api, name="header key", type="api_key",
                              settings={"param": "X-Key"}, secret={"key": key}),
            "query": _create(api, name="query key", type="api_key",
                             settings={"in": "query", "param": "api_key"},
                             secret={"key": query_key}),
            "bearer": _create(api, name="bearer", type="bearer", secret={"token": bearer}),
            "basic": _create(api, name="basic", type="basic",
                             secret={"username": user, "password": password}),
        }
        for kind, auth in made.items():
            assert auth["status"] == "active"
            assert auth["fingerprint"].startswith("sha256:")
            wf = save(api, _flow(target, auth["id"], f"/{kind}"))
            done = run(api, wf["id"])
            assert done["status"] == "succeeded", done
            assert done["steps"][0]["input"] == {"method": "GET", "url": f"{target.url}/{kind}"}
        listed = api.get("/v1/authentications").json()
        assert {a["name"] for a in listed} == {"header key", "query key", "bearer", "basic"}
        assert api.get(f"/v1/authentications/{made['basic']['id']}").status_code == 200
        assert api.get("/openapi.json").status_code == 200

    assert target.hits("/header")[-1].headers["x-key"] == key
    assert target.hits("/query")[-1].query["api_key"] == query_key
    assert target.hits("/bearer")[-1].headers["authorization"] == f"Bearer {bearer}"
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert target.hits("/basic")[-1].headers["authorization"] == f"Basic {basic}"

    server.stop()  # flush the log and checkpoint nothing: the WAL is searched as it is
    server.start()
    stored = _stored_bytes(server)
    log = server.log_path.read_bytes() if server.log_path else b""
    for value in (key, query_key, bearer, user, password):
        raw = value.encode()
        assert all(raw not in body for body in api.bodies), value
        assert raw not in stored
        assert raw not in log


def test_bad_secrets_are_refused_naming_the_field_not_the_value(server: Server) -> None:
    _, token = server.create_account("Refusals")
    with server.client(token) as api:
        short = api.post("/v1/authentications", json={
            "name": "short", "type": "bearer", "secret": {"token": "abc1234"}})
        assert short.status_code == 422, short.text
        assert short.json()["error"]["issues"][0]["path"] == "$.secret.token"
        assert "at least 8" in short.text and "abc1234" not in short.text
        misplaced = api.post("/v1/authentications", json={
            "name": "misplaced", "type": "api_key", "settings": {"key": "k" * 20}})
        issues = {i["path"]: i["message"] for i in misplaced.json()["error"]["issues"]}
        assert "send it in `secret`" in issues["$.settings.key"]
        assert "is required" in issues["$.secret.key"]
        assert "k" * 20 not in misplaced.text
        unknown = api.post("/v1/authentications", json={
            "name": "x", "type": "password", "secret": {}})
        assert unknown.status_code == 422
        plain_oauth = api.post("/v1/authentications", json={
            "name": "o", "type": "oauth2_client", "secret": {"client_secret": "s" * 16},
            "settings": {"token_url": "http://example.test/token", "client_id": "c"}})
        assert plain_oauth.status_code == 422
        assert "$.settings.token_url" in plain_oauth.text
        ok = _create(Recording(api), name="dup", type="bearer", secret={"token": "t" * 12})
        dup = api.post("/v1/authentications", json={
            "name": "dup", "type": "bearer", "secret": {"token": "t" * 12}})
        assert dup.status_code == 409
        assert ok["id"]


def test_replace_test_and_delete(server: Server, target: Target) -> None:
    _, token = server.create_account("Lifecycle")
    first, second = canary("FIRST"), canary("SECOND")
    target.script("/probe", (200, {}, {"ok": True}))
    with server.client(token) as api:
        auth = _create(Recording(api), name="svc", type="bearer", secret={"token": first},
                       settings={"test_url": f"{target.url}/probe"})
        tested = api.post(f"/v1/authentications/{auth['id']}/test").json()
        assert tested == {"ok": True, "message": f"HTTP 200 from GET {target.url}/probe",
                          "status": 200}
        assert target.hits("/probe")[-1].headers["authorization"] == f"Bearer {first}"
        changed = api.patch(f"/v1/authentications/{auth['id']}",
                            json={"secret": {"token": second}})
        assert changed.status_code == 200, changed.text
        assert changed.json()["fingerprint"] != auth["fingerprint"]
        assert second not in changed.text
        wf = save(api, _flow(target, auth["id"], "/replaced"))
        assert run(api, wf["id"])["status"] == "succeeded"
        assert target.hits("/replaced")[-1].headers["authorization"] == f"Bearer {second}"
        read = api.get(f"/v1/authentications/{auth['id']}").json()
        assert read["last_used_at"] is not None
        assert api.delete(f"/v1/authentications/{auth['id']}").status_code == 204
        assert api.get(f"/v1/authentications/{auth['id']}").status_code == 404
        failed = run(api, wf["id"])
        assert failed["status"] == "failed"
        assert failed["steps"][0]["error"]["code"] == "authentication_not_found"


def test_personal_authentications_belong_to_their_owner(server: Server,
                                                        target: Target) -> None:
    account_id, token = server.create_account("Personal")
    other = server.cli("accounts", "token", "--account", account_id).stdout.strip().split()[-1]
    with server.client(token) as mine, server.client(other) as theirs:
        personal = _create(Recording(mine), name="mine", type="bearer", shared=False,
                           secret={"token": "p" * 16})
        shared = _create(Recording(mine), name="ours", type="bearer",
                         secret={"token": "s" * 16})
        assert [a["name"] for a in theirs.get("/v1/authentications").json()] == ["ours"]
        assert theirs.get(f"/v1/authentications/{personal['id']}").status_code == 404
        refused = theirs.post("/v1/workflows", json={
            "definition": _flow(target, personal["id"], "/personal")})
        assert refused.status_code == 422
        assert refused.json()["error"]["issues"][0]["path"] == "$.steps[0].auth"
        assert save(theirs, _flow(target, shared["id"], "/shared"))["id"]
        assert save(mine, _flow(target, personal["id"], "/personal"))["id"]


def test_a_moved_secret_does_not_decrypt(server: Server) -> None:
    _, token = server.create_account("Moved")
    with server.client(token) as api:
        a = _create(Recording(api), name="a", type="bearer", secret={"token": "a" * 16})
        b = _create(Recording(api), name="b", type="bearer", secret={"token": "b" * 16})
        db = sqlite3.connect(server.data_dir / "us.db")
        with db:
            (secret_a,) = db.execute("SELECT secret FROM authentications WHERE id = ?",
                                     (a["id"],)).fetchone()
            db.execute("UPDATE authentications SET secret = ? WHERE id = ?",
                       (secret_a, b["id"]))
        db.close()
        r = api.post(f"/v1/authentications/{b['id']}/test")
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "data_unreadable"
        assert "a" * 16 not in r.text
