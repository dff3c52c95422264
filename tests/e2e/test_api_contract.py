"""Validation errors with JSON paths, versions, account isolation, region cells, the SSRF
guard and signed webhooks, through the real server."""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3

import httpx
import pytest

from tests.support.flows import run, save


def step(name: str, **kw: object) -> dict:
    return {"name": name, "connector": "transform", "input": {"expression": "1"}, **kw}


def issues_of(r: httpx.Response) -> dict[str, str]:
    assert r.status_code == 422, r.text
    return {i["path"]: i["message"] for i in r.json()["error"]["issues"]}


@pytest.fixture
def client(server, account):
    _, token = account
    with server.client(token) as c:
        yield c


def test_every_error_is_returned_with_its_json_path(client):
    doc = {
        "name": "broken",
        "trigger": {"type": "webhook", "cron": "* * * * *"},
        "steps": [
            step("a", next="nowhere"),
            {"name": "b", "connector": "no_such_connector", "input": {}},
            {"name": "c", "connector": "http", "input": {"method": "FETCH", "url": 42}},
            step("d", input={"expression": "$.steps.ghost.body"}),
        ],
    }
    found = issues_of(client.post("/v1/workflows", json={"definition": doc}))
    assert "$.trigger.cron" in found
    assert "$.steps[0].next" in found and "nowhere" in found["$.steps[0].next"]
    assert "$.steps[1].connector" in found
    assert any(p.startswith("$.steps[2].input") for p in found)
    assert any(p.startswith("$.steps[3].input.expression") for p in found)
    assert client.get("/v1/workflows").json() == [] or all(
        w["name"] != "broken" for w in client.get("/v1/workflows").json()
    )


def test_cycle_is_refused_with_the_cycle_named(client):
    doc = {
        "name": "loop",
        "trigger": {"type": "manual"},
        "steps": [step("a", next="b"), step("b", next="a")],
    }
    found = issues_of(client.post("/v1/workflows", json={"definition": doc}))
    assert any("a -> b -> a" in m or "b -> a -> b" in m for m in found.values()), found


def test_validate_call_and_yaml_text(client):
    text = "name: from yaml\ntrigger: {type: manual}\nsteps:\n  - name: x\n    connector: transform\n    input: {expression: '1 + 1'}\n"
    r = client.post("/v1/workflows/validate", json={"definition": text})
    assert r.json() == {"valid": True, "issues": []}
    r = client.post("/v1/workflows/validate", json={"definition": "name: [unclosed"})
    body = r.json()
    assert body["valid"] is False and body["issues"][0]["path"] == "$"
    r = client.post("/v1/workflows", json={"nope": 1})
    assert "$.body.definition" in issues_of(r)


def test_every_save_is_a_new_version_and_executions_record_theirs(client):
    v1 = {
        "name": "versioned",
        "trigger": {"type": "manual"},
        "steps": [{"name": "x", "connector": "transform", "input": {"expression": "'one'"}}],
    }
    wf = save(client, v1)
    first = run(client, wf["id"])
    v2 = json.loads(json.dumps(v1).replace("'one'", "'two'"))
    r = client.put(f"/v1/workflows/{wf['id']}", json={"definition": v2})
    assert r.status_code == 200 and r.json()["version"] == 2
    second = run(client, wf["id"])
    assert (first["workflow_version"], first["result"]) == (1, "one")
    assert (second["workflow_version"], second["result"]) == (2, "two")
    assert [v["version"] for v in client.get(f"/v1/workflows/{wf['id']}/versions").json()] == [1, 2]
    old = client.get(f"/v1/workflows/{wf['id']}/versions/1").json()
    assert old["document"]["steps"][0]["input"]["expression"] == "'one'"
    bad = client.put(f"/v1/workflows/{wf['id']}", json={"definition": {"name": "x"}})
    assert bad.status_code == 422
    assert client.get(f"/v1/workflows/{wf['id']}").json()["version"] == 2


def test_account_isolation(server, client):
    _, other_token = server.create_account("Other")
    wf = save(client, {"name": "mine", "trigger": {"type": "manual"}, "steps": [step("x")]})
    done = run(client, wf["id"])
    with server.client(other_token) as other:
        assert other.get(f"/v1/workflows/{wf['id']}").status_code == 404
        assert other.get(f"/v1/workflows/{wf['id']}/versions").status_code == 404
        assert other.put(f"/v1/workflows/{wf['id']}", json={"definition": {}}).status_code in (
            404,
            422,
        )
        assert other.delete(f"/v1/workflows/{wf['id']}").status_code == 404
        assert other.post(f"/v1/workflows/{wf['id']}/run", json={}).status_code == 404
        assert other.get(f"/v1/executions/{done['id']}").status_code == 404
        assert other.post(f"/v1/executions/{done['id']}/replay").status_code == 404
        assert other.post(f"/v1/executions/{done['id']}/cancel").status_code == 404
        assert other.get("/v1/workflows").json() == []
        assert other.get("/v1/executions").json() == []
    anon = httpx.Client(base_url=server.url, verify=server.client_ssl())
    assert anon.get("/v1/workflows").status_code == 401
    assert (
        anon.get("/v1/workflows", headers={"Authorization": "Bearer sf_us_forged"}).status_code
        == 401
    )


def test_an_eu_account_writes_only_into_the_eu_cell(server):
    account_id, token = server.create_account("Europa", region="eu")
    with server.client(token) as c:
        wf = save(c, {"name": "eu flow", "trigger": {"type": "manual"}, "steps": [step("x")]})
        assert run(c, wf["id"])["status"] == "succeeded"
    counts = {}
    for region in ("us", "eu", "apac"):
        db = sqlite3.connect(server.data_dir / f"{region}.db")
        counts[region] = (
            sum(
                db.execute(
                    f"SELECT count(*) FROM {t} WHERE account_id = ?", (account_id,)
                ).fetchone()[0]
                for t in ("api_tokens", "workflows", "workflow_versions", "executions", "step_runs")
            )
            + db.execute("SELECT count(*) FROM accounts WHERE id = ?", (account_id,)).fetchone()[0]
        )
        db.close()
    assert counts["us"] == 0 and counts["apac"] == 0
    assert counts["eu"] >= 6
    for region in ("us", "apac"):  # not a byte of it, WAL included
        for suffix in ("", "-wal"):
            path = server.data_dir / f"{region}.db{suffix}"
            if path.exists():
                assert account_id.encode() not in path.read_bytes()


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/",
        "http://[::1]:9/",
        "http://127.0.0.2:9/",
    ],
)
def test_ssrf_guard_refuses_private_addresses(client, url):
    wf = save(
        client,
        {
            "name": "ssrf",
            "trigger": {"type": "manual"},
            "steps": [
                {"name": "call", "connector": "http", "input": {"method": "GET", "url": url}}
            ],
        },
    )
    done = run(client, wf["id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "ssrf_blocked"
    assert done["steps"][0]["attempts"] == 1
    assert "SEALFLOW_SSRF_ALLOW" in done["error"]["message"]


def test_signed_webhook(server, client):
    wf = client.post(
        "/v1/workflows",
        json={
            "definition": {
                "name": "signed",
                "trigger": {"type": "webhook", "signature": {"header": "X-Signature"}},
                "steps": [step("x")],
            }
        },
    ).json()
    secret = wf["webhook_secret"]
    assert secret.startswith("whsec_")
    assert "webhook_secret" not in client.get(f"/v1/workflows/{wf['id']}").json()
    body = b'{"event": "paid"}'
    good = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    with httpx.Client(verify=server.client_ssl()) as anon:
        headers = {"content-type": "application/json"}
        assert anon.post(wf["webhook_url"], content=body, headers=headers).status_code == 401
        bad = anon.post(
            wf["webhook_url"],
            content=body,
            headers={**headers, "X-Signature": "sha256=" + "0" * 64},
        )
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "bad_signature"
        ok = anon.post(
            wf["webhook_url"], content=body, headers={**headers, "X-Signature": f"sha256={good}"}
        )
        assert ok.status_code == 202, ok.text
        assert anon.post(server.url + "/hooks/us/not-a-token", json={}).status_code == 404
        assert anon.post(server.url + "/hooks/mars/x", json={}).status_code == 404


def test_webhook_body_the_stores_cannot_hold_is_a_422(server, client):
    wf = save(client, {"name": "hook", "trigger": {"type": "webhook"}, "steps": [step("x")]})
    with httpx.Client(verify=server.client_ssl()) as anon:
        headers = {"content-type": "application/json"}
        deep = anon.post(wf["webhook_url"], content="[" * 254 + "]" * 254, headers=headers)
        assert deep.status_code == 422, deep.text
        assert "nests deeper" in deep.json()["error"]["issues"][0]["message"]
        surrogate = anon.post(wf["webhook_url"], content=b'{"s": "\\ud800"}', headers=headers)
        assert surrogate.status_code == 422
        broken = anon.post(wf["webhook_url"], content=b'{"n": ', headers=headers)
        assert broken.status_code == 422


def test_a_failed_webhook_run_answers_without_its_error_text(server, client, target):
    target.script("/internal", (500, {}, {"detail": "db password rejected"}))
    wf = save(client, {"name": "fails", "trigger": {"type": "webhook", "respond": "wait"}, "steps": [
        {"name": "call", "connector": "http", "retry": {"max_attempts": 1},
         "input": {"method": "GET", "url": f"{target.url}/internal"}}]})
    with httpx.Client(verify=server.client_ssl(), timeout=30) as anon:
        r = anon.post(wf["webhook_url"], json={})
    assert r.status_code == 502
    body = r.json()["error"]
    assert body["code"] == "workflow_failed"
    assert "127.0.0.1" not in r.text and "internal" not in r.text and "password" not in r.text
    detail = client.get(f"/v1/executions/{body['execution_id']}").json()
    assert detail["error"]["code"] == "http_500"  # the account still sees what went wrong
