"""Monitoring over the real `sealflow serve` (HTTPS): /metrics only with its token and with
the named families after an execution ran; /readyz naming the key provider when its key file
is gone; a brute force through the login API reaching the alert webhook; an account's audit
trail streamed to its SIEM webhook through the audit-sinks API, catching up after an
outage."""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sealflow.siem import formats
from tests.support.receivers import (
    HttpReceiver,
    make_certificates,
    start_http_receiver,
)
from tests.support.server import Server, make_server

METRICS_TOKEN = "metrics-canary-" + secrets.token_hex(8)
ALERT_SECRET = "alert-canary-" + secrets.token_hex(8)
FLOW = {"name": "double", "trigger": {"type": "manual"},
        "steps": [{"name": "double", "connector": "transform",
                   "input": {"expression": "$.trigger.body.n * 2"}}]}


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_certificates(Path(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="module")
def alerts() -> Iterator[HttpReceiver]:
    r = start_http_receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def siem(tls: tuple[Path, Path, Path]) -> Iterator[HttpReceiver]:
    r = start_http_receiver(tls[1], tls[2])
    yield r
    r.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, tls: tuple[Path, Path, Path],
           alerts: HttpReceiver) -> Iterator[Server]:
    sinks = [{"kind": "webhook", "url": alerts.url, "secret": ALERT_SECRET}, {"kind": "log"}]
    s = make_server(
        Path(tmp_path_factory.mktemp("server")),
        SEALFLOW_METRICS__TOKEN=METRICS_TOKEN,
        SEALFLOW_OUTBOUND_CA_BUNDLE=str(tls[0]),
        SEALFLOW_ALERTS__INTERVAL_S="0.3",
        SEALFLOW_ALERTS__SINKS=json.dumps(sinks),
        SEALFLOW_SIEM__INTERVAL_S="0.2",
        SEALFLOW_SIEM__RETRY_MIN_S="0.2",
        SEALFLOW_SIEM__RETRY_MAX_S="0.4",
    )
    s.start()
    yield s
    s.stop()


def wait_for(check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_metrics_need_the_token_and_show_the_named_families(
    server: Server, account: tuple[str, str],
) -> None:
    account_id, token = account
    with server.client(token) as c:
        flow = c.post("/v1/workflows", json={"definition": FLOW})
        assert flow.status_code == 201, flow.text
        run = c.post(f"/v1/workflows/{flow.json()['id']}/run",
                     json={"input": {"n": 21}, "wait": True})
        assert run.status_code in (200, 202) and run.json()["status"] == "succeeded", run.text
    with server.client() as c:
        c.post("/v1/auth/login", json={"email": "nobody@example.com", "password": "wrong!!"})
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = c.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    body = r.text
    for family in ("sealflow_executions", "sealflow_step_duration_seconds",
                   "sealflow_queue_depth", "sealflow_purge_backlog",
                   "sealflow_decryption_failures", "sealflow_login_failures",
                   "sealflow_audit_append_duration_seconds"):
        assert re.search(rf"^# TYPE {family}(_total)? (counter|histogram|gauge)$", body,
                         re.MULTILINE), family
    assert 'sealflow_executions_total{status="succeeded"} 1.0' in body
    assert 'sealflow_step_duration_seconds_count{connector="transform"} 1.0' in body
    assert 'sealflow_login_failures_total{factor="password"}' in body
    assert 'sealflow_queue_depth{region="us",state="queued"} 0.0' in body
    assert 'sealflow_purge_backlog{region="us"} 0.0' in body
    assert "sealflow_audit_append_duration_seconds_count" in body
    assert account_id not in body and "nobody@example.com" not in body
    assert METRICS_TOKEN not in server.log_path.read_text()  # type: ignore[union-attr]


def test_readyz_names_the_key_provider_when_its_key_file_is_gone(server: Server) -> None:
    with server.client() as c:
        ok = c.get("/readyz")
        assert ok.status_code == 200, ok.text
        assert ok.json()["checks"] == {"database:us": "ok", "key_provider:us": "ok",
                                       "database:eu": "ok", "key_provider:eu": "ok",
                                       "database:apac": "ok", "key_provider:apac": "ok",
                                       "queue": "ok"}
        key = server.data_dir / "keys" / "us.kek.json"
        moved = key.with_name("moved-away.json")
        key.rename(moved)
        try:
            down = c.get("/readyz")
        finally:
            moved.rename(key)
        assert down.status_code == 503
        assert down.json()["failing"] == ["key_provider:us"]
        assert down.json()["checks"]["key_provider:us"].startswith("unavailable (")
        assert c.get("/readyz").status_code == 200


def test_a_brute_force_through_the_login_api_reaches_the_alert_webhook(
    server: Server, alerts: HttpReceiver,
) -> None:
    # Password spraying: one client, a different e-mail each time (the per-member throttle
    # never engages; the client's failures are what the rule counts).
    emails = [f"target-{i}-{secrets.token_hex(4)}@example.com" for i in range(11)]
    with server.client() as c:
        answers = [c.post("/v1/auth/login", json={"email": e, "password": "guess"}).status_code
                   for e in emails]
    assert answers.count(401) >= 10 and set(answers) <= {401, 429}

    def brute() -> list[dict[str, Any]]:
        with alerts.lock:
            posts = list(alerts.accepted)
        out = []
        for post in posts:
            assert formats.verify_signature(ALERT_SECRET.encode(),
                                            post.headers["x-sealflow-signature"], post.body)
            body = json.loads(post.body)
            if body["rule"] == "brute_force" and body["key"].startswith("us:client:"):
                out.append(body)
        return out

    fired = wait_for(brute)
    assert len(fired) == 1 and not any(e in json.dumps(fired) for e in emails)
    assert fired[0]["details"]["failures"] >= 10
    time.sleep(1.0)  # three more evaluations: deduplicated, nothing new for that target
    assert len(brute()) == len(fired)


def test_an_accounts_trail_streams_to_its_siem_webhook_and_catches_up(
    server: Server, siem: HttpReceiver,
) -> None:
    account_id, token = server.create_account("Streamer")
    other_id, other_token = server.create_account("Other")
    with server.client(token) as c:
        made = c.post("/v1/account/audit-sinks",
                      json={"name": "splunk", "kind": "webhook", "url": siem.url})
        assert made.status_code == 201, made.text
        secret = made.json()["secret"]
        listed = c.get("/v1/account/audit-sinks").json()
        assert secret not in json.dumps(listed) and listed[0]["kind"] == "webhook"
        assert c.post(f"/v1/account/audit-sinks/{made.json()['id']}/test").json()["ok"]
        bad = c.post("/v1/account/audit-sinks",
                     json={"name": "x", "kind": "webhook", "url": "http://in.example"})
        assert bad.status_code == 422 and bad.json()["error"]["issues"][0]["path"] == "$.url"
    with server.client(other_token) as c:
        assert c.get("/v1/account/audit-sinks").json() == []
        assert c.delete(f"/v1/account/audit-sinks/{made.json()['id']}").status_code == 404

    def records(acc: str) -> list[str]:
        with sqlite3.connect(server.data_dir / "us.db") as db:
            return [r for (r,) in db.execute(
                "SELECT record FROM audit_records WHERE account = ? ORDER BY seq", (acc,))]

    def streamed() -> list[str]:
        with siem.lock:
            posts = list(siem.accepted)
        lines = []
        for post in posts:
            if post.headers.get("x-sealflow-sink") != made.json()["id"]:
                continue
            assert formats.verify_signature(secret.encode(),
                                            post.headers["x-sealflow-signature"], post.body)
            lines += [ln for ln in post.body.decode().splitlines()
                      if json.loads(ln).get("type") != "sealflow.audit_sink.test"]
        return lines

    wait_for(lambda: streamed() and streamed() == records(account_id))
    siem.status = 503  # the SIEM is down while the account keeps working
    with server.client(token) as c:
        for i in range(3):
            assert c.post("/v1/tokens", json={"name": f"t{i}"}).status_code == 201
    wait_for(lambda: siem.refused)
    siem.status = 200
    wait_for(lambda: streamed() == records(account_id) and len(records(account_id)) >= 5)
    lines = streamed()
    assert len(lines) == len(set(lines))  # each once
    assert all(json.loads(ln)["account_id"] == account_id for ln in lines)
    assert other_id not in "".join(lines)
