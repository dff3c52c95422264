"""Redaction end to end (S5, D7): canary secrets go out by header, query, body and basic auth
to a careless third party that reflects them back (in its body, in its headers, base64'd, in
an error message), and one step fails on purpose. No canary, in any form it can take on the
wire, is found in the database files (WAL included), the server log, an API response, the
CLI's output or an error record. Token formats and card numbers in outputs are masked, and
the access log carries no webhook token, no query value and no client address."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import httpx
import pytest

from tests.support.flows import run, save, wait_done
from tests.support.server import Server, make_server
from tests.support.target import Target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = make_server(Path(tmp_path_factory.mktemp("redaction")), SEALFLOW_LOG_LEVEL="debug")
    s.start()
    yield s
    s.stop()


def forms(secret: str) -> set[str]:
    """What a byte scan looks for: the secret and its wire forms (the base64 forms are the
    inner characters stable at each byte offset)."""
    raw = secret.encode()
    found = {secret, quote(secret, safe=""), quote_plus(secret), raw.hex(), raw.hex().upper(),
             json.dumps(secret)[1:-1]}
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(b"\0" * offset + raw).decode()
            inner = text[(offset * 4 + 2) // 3 + 1: len(text) - 4]
            if len(inner) >= 8:
                found.add(inner)
    return found


def _auth(api: httpx.Client, **body: Any) -> str:
    r = api.post("/v1/authentications", json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def _flow(target: Target, ids: dict[str, str]) -> dict[str, Any]:
    url = f"{target.url}/reflect"
    return {
        "name": "careless third party",
        "trigger": {"type": "webhook"},
        "steps": [
            {"name": "by_header", "connector": "http", "auth": ids["header"],
             "input": {"method": "GET", "url": url}},
            {"name": "by_query", "connector": "http", "auth": ids["query"],
             "input": {"method": "GET", "url": url}},
            {"name": "in_body", "connector": "http", "auth": ids["basic"],
             "input": {"method": "POST", "url": url,
                       "json": {"note": "{{ $.auth.password }}", "user": "$.auth.username"}}},
            {"name": "formats", "connector": "transform",
             "input": {"expression": "$.trigger.body.leaks"}},
            {"name": "fails", "connector": "http", "auth": ids["bearer"],
             "retry": {"max_attempts": 1},
             "input": {"method": "GET", "url": f"{url}/fail"}},
        ],
    }


def _scan(blobs: dict[str, bytes], secrets_: dict[str, str]) -> list[str]:
    leaks = []
    for what, blob in blobs.items():
        for name, secret in secrets_.items():
            for form in forms(secret):
                if form.encode() in blob:
                    leaks.append(f"{name} as {form!r} in {what}")
    return leaks


def test_no_canary_in_any_form_anywhere(server: Server, target: Target) -> None:
    account_id, token = server.create_account("Redaction")
    canaries = {name: f"CANARY{name.upper()}{secrets.token_hex(12)}"
                for name in ("key", "query", "user", "password", "bearer")}
    leaks_in = {  # token formats and a card number in data (not stored authentications)
        "aws": "AKIA" + "".join(secrets.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
                                for _ in range(16)),
        "card": "4111 1111 1111 1111",
        "jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJjYW5hcnkifQ." + secrets.token_urlsafe(32),
    }
    responses: list[bytes] = []
    with server.client(token) as api:
        ids = {
            "header": _auth(api, name="header key", type="api_key",
                            settings={"param": "X-Key"}, secret={"key": canaries["key"]}),
            "query": _auth(api, name="query key", type="api_key",
                           settings={"in": "query", "param": "key"},
                           secret={"key": canaries["query"]}),
            "basic": _auth(api, name="basic", type="basic",
                           secret={"username": canaries["user"],
                                   "password": canaries["password"]}),
            "bearer": _auth(api, name="bearer", type="bearer",
                            secret={"token": canaries["bearer"]}),
        }
        wf = save(api, _flow(target, ids))
        with httpx.Client(verify=server.client_ssl(), timeout=30) as anon:
            hook = anon.post(f"{wf['webhook_url']}?key=not-a-secret-but-a-value",
                             json={"leaks": leaks_in})
        assert hook.status_code == 202, hook.text
        done = wait_done(api, hook.json()["execution_id"])
        assert done["status"] == "failed", done
        for path in (f"/v1/executions/{done['id']}", f"/v1/executions?workflow_id={wf['id']}",
                     "/v1/authentications", f"/v1/workflows/{wf['id']}/versions/1"):
            r = api.get(path)
            assert r.status_code == 200
            responses.append(r.content + str(r.headers).encode())

    # Every form went out for real, and came back: the target saw them.
    seen = [h.headers.get("x-key") or h.query.get("key") or h.headers.get("authorization")
            for h in target.hits("/reflect") + target.hits("/reflect/fail")]
    assert canaries["key"] in seen and canaries["query"] in seen
    assert f"Bearer {canaries['bearer']}" in seen

    steps = {s["name"]: s for s in done["steps"]}
    header_out = json.dumps(steps["by_header"]["output"])
    assert "[REDACTED:header key]" in header_out
    assert steps["by_header"]["output"]["headers"]["set-cookie"] == "[REDACTED]"
    assert "[REDACTED:basic]" in json.dumps(steps["in_body"]["output"])
    error = steps["fails"]["error"]
    assert error["code"] == "http_400" and "[REDACTED:bearer]" in json.dumps(error)
    formats = json.dumps(steps["formats"]["output"])
    assert "[REDACTED:aws]" in formats and "[REDACTED:card]" in formats
    assert "[REDACTED:jwt]" in formats
    for value in leaks_in.values():
        assert value not in formats

    cli = server.cli("workflows", "export", wf["id"]).stdout.encode()
    cli += server.cli("keys", "status", "--account", account_id).stdout.encode()
    server.stop()
    server.start()
    blobs = {f"API {i}": body for i, body in enumerate(responses)}
    blobs["CLI output"] = cli
    blobs["server log"] = server.log_path.read_bytes() if server.log_path else b""
    for path in [*server.data_dir.glob("*.db*"), *(server.data_dir / "keys").glob("*")]:
        blobs[path.name] = path.read_bytes()
    assert _scan(blobs, canaries) == []
    for what, blob in blobs.items():
        for value in (leaks_in["aws"], leaks_in["jwt"]):
            assert value.encode() not in blob, what

    # The access log: a line per request, without the webhook token, query values or IPs.
    log = blobs["server log"].decode()
    access = [json.loads(line) for line in log.splitlines()
              if line.startswith("{") and '"logger": "sealflow.access"' in line]
    assert any(a["path"] == "/hooks/us/[REDACTED]" and a["query"] == ["key"] for a in access)
    hook_token = wf["webhook_url"].rsplit("/", 1)[1]
    assert hook_token not in log and "not-a-secret-but-a-value" not in log
    assert "127.0.0.1" not in json.dumps(access)
    assert all(a["client"].startswith("ip_") for a in access)


def test_account_redaction_settings(server: Server, target: Target) -> None:
    _, token = server.create_account("Settings")
    with server.client(token) as api:
        bad = api.patch("/v1/account/settings",
                        json={"redaction": {"disabled_detectors": ["nope"]}})
        assert bad.status_code == 422
        ok = api.patch("/v1/account/settings", json={"redaction": {
            "extra_field_names": ["customer_ref"], "disabled_detectors": ["card"]}})
        assert ok.status_code == 200, ok.text
        assert api.get("/v1/account/settings").json()["redaction"]["disabled_detectors"] == [
            "card"]
        wf = save(api, {"name": "shape", "trigger": {"type": "manual"}, "steps": [
            {"name": "s", "connector": "transform", "input": {"expression": "$.trigger.body"}}]})
        body = {"customer_ref": "ref-123456789", "card": "4111 1111 1111 1111", "n": 42}
        done = run(api, wf["id"], body)
    assert done["steps"][0]["output"] == {"customer_ref": "[REDACTED]",
                                          "card": "4111 1111 1111 1111", "n": 42}


def test_forms_helper_finds_base64_inside_a_stream() -> None:
    secret = "CANARY" + secrets.token_hex(8)
    stream = base64.b64encode(b"xy" + secret.encode() + b"tail").decode()
    assert any(form in stream for form in forms(secret))
    assert binascii.hexlify(secret.encode()).decode() in forms(secret)
