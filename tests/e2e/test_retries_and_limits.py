"""Retries (W6) and technical limits (W5), through the real server."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.support.flows import run, save, wait_done
from tests.support.server import make_server


def http_flow(url: str, **step: object) -> dict:
    return {
        "name": "call",
        "trigger": {"type": "manual"},
        "steps": [
            {"name": "call", "connector": "http", "input": {"method": "GET", "url": url}, **step}
        ],
    }


def test_503_twice_then_200_takes_three_attempts(server, account, target):
    _, token = account
    target.script("/flaky", (503, {}, {"e": 1}), (503, {}, {"e": 2}), (200, {}, {"ok": True}))
    with server.client(token) as client:
        wf = save(
            client,
            http_flow(f"{target.url}/flaky", retry={"initial_interval": 0.05, "max_interval": 0.2}),
        )
        done = run(client, wf["id"])
    assert done["status"] == "succeeded", done
    step = done["steps"][0]
    assert step["attempts"] == 3
    assert step["output"]["body"] == {"ok": True}
    assert len(target.hits("/flaky")) == 3
    assert sum("retrying" in line["msg"] for line in step["logs"]) == 2


def test_retry_after_is_honoured(server, account, target):
    _, token = account
    target.script("/busy", (429, {"Retry-After": "1"}, {}), (200, {}, {"ok": 1}))
    with server.client(token) as client:
        wf = save(
            client,
            http_flow(f"{target.url}/busy", retry={"initial_interval": 0.01, "max_interval": 0.05}),
        )
        done = run(client, wf["id"])
    assert done["status"] == "succeeded", done
    first, second = target.hits("/busy")
    assert done["steps"][0]["attempts"] == 2
    assert done["steps"][0]["duration_ms"] >= 1000  # waited Retry-After, not the 50 ms backoff


def test_400_is_not_retried_and_fails_the_execution(server, account, target):
    _, token = account
    target.script("/bad", (400, {}, {"error": "bad request"}))
    with server.client(token) as client:
        wf = save(client, http_flow(f"{target.url}/bad", retry={"initial_interval": 0.01}))
        done = run(client, wf["id"])
    assert done["status"] == "failed"
    assert done["steps"][0]["attempts"] == 1
    assert done["error"]["code"] == "http_400"
    assert done["error"]["step"] == "call"
    assert done["error"]["retryable"] is False
    assert len(target.hits("/bad")) == 1


def test_retries_exhausted_fail_with_the_last_error(server, account, target):
    _, token = account
    target.script("/down", (502, {}, {}))
    with server.client(token) as client:
        wf = save(
            client,
            http_flow(f"{target.url}/down", retry={"max_attempts": 3, "initial_interval": 0.01}),
        )
        done = run(client, wf["id"])
    assert done["status"] == "failed"
    assert done["steps"][0]["attempts"] == 3
    assert done["error"]["code"] == "http_502"


def test_on_error_continue_and_error_branch(server, account, target):
    _, token = account
    target.script("/gone", (410, {}, {}))
    doc = {
        "name": "errors",
        "trigger": {"type": "manual"},
        "steps": [
            {
                "name": "soft",
                "connector": "http",
                "on_error": "continue",
                "input": {"method": "GET", "url": f"{target.url}/gone"},
            },
            {
                "name": "hard",
                "connector": "http",
                "on_error": "branch",
                "error_next": "recover",
                "input": {"method": "GET", "url": f"{target.url}/gone"},
            },
            {"name": "unreached", "connector": "raise_error", "input": {"message": "no"}},
            {
                "name": "recover",
                "connector": "transform",
                "input": {
                    "expression": "{'soft': $.steps.soft.error.code, 'hard': $.steps.hard.error.code}"
                },
            },
        ],
    }
    with server.client(token) as client:
        done = run(client, save(client, doc)["id"])
    assert done["status"] == "succeeded", done
    assert [s["name"] for s in done["steps"]] == ["soft", "hard", "recover"]
    assert [s["status"] for s in done["steps"]] == ["failed", "failed", "succeeded"]
    assert done["result"] == {"soft": "http_410", "hard": "http_410"}


# ----------------------------------------------------------------------------- limits
@pytest.fixture(scope="module")
def tight(tmp_path_factory):
    """A server whose W5 limits are small enough to hit quickly."""
    s = make_server(
        tmp_path_factory.mktemp("tight"),
        SEALFLOW_LIMITS__CONNECTOR_TIMEOUT_S="1",
        SEALFLOW_LIMITS__HTTP_TIMEOUT_MAX_S="1.5",
        SEALFLOW_LIMITS__WEBHOOK_REPLY_TIMEOUT_S="1",
        SEALFLOW_LIMITS__WEBHOOK_PAYLOAD_BYTES="2000",
        SEALFLOW_LIMITS__MAX_STEPS_PER_WORKFLOW="6",
        SEALFLOW_LIMITS__MAX_STEPS_PER_EXECUTION="8",
        SEALFLOW_LIMITS__MAX_LOOP_ITERATIONS="3",
        SEALFLOW_LIMITS__MAX_STEP_OUTPUT_BYTES="2000",
        SEALFLOW_LIMITS__EXECUTION_WALL_TIME_S="2.5",
        SEALFLOW_LIMITS__MAX_CALL_DEPTH="2",
        SEALFLOW_LIMITS__API_RATE_PER_S="2",
        SEALFLOW_LIMITS__API_BURST="200",
    )
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def tight_client(tight):
    _, token = tight.create_account("Tight")
    with tight.client(token) as c:
        yield c


def manual(*steps: dict) -> dict:
    return {"name": "limits", "trigger": {"type": "manual"}, "steps": list(steps)}


def test_limit_http_timeout(tight_client, target):
    target.script("/slow", (200, {"X-Test-Delay": "3"}, {}))
    done = run(
        tight_client,
        save(
            tight_client,
            manual(
                {
                    "name": "slow",
                    "connector": "http",
                    "retry": {"max_attempts": 1},
                    "input": {"method": "GET", "url": f"{target.url}/slow"},
                }
            ),
        )["id"],
    )
    assert done["status"] == "failed"
    assert done["error"]["code"] in ("timeout", "limit_exceeded")
    assert (
        "http_timeout_max_s" in done["error"]["message"]
        or done["error"].get("limit") == "http_timeout_max_s"
    )


def test_limit_execution_wall_time(tight_client):
    done = run(
        tight_client,
        save(
            tight_client,
            manual(
                {"name": "a", "connector": "delay", "input": {"seconds": 1.2}},
                {"name": "b", "connector": "delay", "input": {"seconds": 1.2}},
                {"name": "c", "connector": "delay", "input": {"seconds": 1.2}},
            ),
        )["id"],
    )
    assert done["status"] == "failed"
    assert done["error"]["limit"] == "execution_wall_time_s", done["error"]


def test_limit_loop_iterations(tight_client):
    done = run(
        tight_client,
        save(
            tight_client,
            manual(
                {
                    "name": "each",
                    "connector": "loop",
                    "input": {"items": "$.trigger.body"},
                    "steps": [
                        {
                            "name": "noop",
                            "connector": "transform",
                            "input": {"expression": "$.item"},
                        }
                    ],
                },
            ),
        )["id"],
        payload=[1, 2, 3, 4, 5],
    )
    assert done["status"] == "failed"
    assert done["error"]["limit"] == "max_loop_iterations", done["error"]


def test_limit_steps_per_execution(tight_client):
    done = run(
        tight_client,
        save(
            tight_client,
            manual(
                {
                    "name": "each",
                    "connector": "loop",
                    "input": {"items": "$.trigger.body", "max_iterations": 3},
                    "steps": [
                        {"name": "one", "connector": "transform", "input": {"expression": "1"}},
                        {"name": "two", "connector": "transform", "input": {"expression": "2"}},
                        {"name": "three", "connector": "transform", "input": {"expression": "3"}},
                    ],
                },
            ),
        )["id"],
        payload=[1, 2, 3],
    )
    assert done["status"] == "failed"
    assert done["error"]["limit"] == "max_steps_per_execution", done["error"]


def test_limit_step_output_size(tight_client):
    done = run(
        tight_client,
        save(
            tight_client,
            manual(
                {
                    "name": "big",
                    "connector": "transform",
                    "input": {"expression": "$pad('', 5000, 'x')"},
                }
            ),
        )["id"],
    )
    assert done["status"] == "failed"
    assert done["error"]["limit"] == "max_step_output_bytes", done["error"]


def test_limit_steps_per_workflow_on_save(tight_client):
    steps = [
        {"name": f"s{i}", "connector": "transform", "input": {"expression": "1"}} for i in range(7)
    ]
    r = tight_client.post("/v1/workflows", json={"definition": manual(*steps)})
    assert r.status_code == 422
    assert any("max_steps_per_workflow" in i["message"] for i in r.json()["error"]["issues"])


def test_limit_call_depth(tight_client):
    # a callable workflow that calls itself: depth grows until max_call_depth stops it
    wf = save(
        tight_client,
        {
            "name": "recurse",
            "trigger": {"type": "callable"},
            "steps": [{"name": "noop", "connector": "transform", "input": {"expression": "1"}}],
        },
    )
    doc = {
        "name": "recurse",
        "trigger": {"type": "callable"},
        "steps": [
            {
                "name": "again",
                "connector": "call_workflow",
                "input": {"workflow_id": wf["id"], "input": {}, "wait": True},
            }
        ],
    }
    r = tight_client.put(f"/v1/workflows/{wf['id']}", json={"definition": doc})
    assert r.status_code == 200, r.text
    starter = save(
        tight_client,
        manual(
            {
                "name": "go",
                "connector": "call_workflow",
                "input": {"workflow_id": wf["id"], "wait": True},
            }
        ),
    )
    done = run(tight_client, starter["id"])
    assert done["status"] == "failed"
    assert "max_call_depth" in done["error"]["message"], done["error"]


def test_limit_webhook_payload(tight, tight_client):
    wf = save(
        tight_client,
        {
            "name": "hook",
            "trigger": {"type": "webhook"},
            "steps": [{"name": "noop", "connector": "transform", "input": {"expression": "1"}}],
        },
    )
    with httpx.Client(verify=tight.client_ssl()) as anon:
        r = anon.post(
            wf["webhook_url"], content=b"x" * 2001, headers={"content-type": "text/plain"}
        )
        assert r.status_code == 413
        assert r.json()["error"]["limit"] == "webhook_payload_bytes"

        def chunks():
            for _ in range(5):
                yield b"y" * 1000

        r = anon.post(wf["webhook_url"], content=chunks())  # chunked: no Content-Length
        assert r.status_code == 413
        assert anon.post(wf["webhook_url"], content=b"x" * 1999).status_code == 202


def test_limit_webhook_reply_timeout(tight, tight_client):
    wf = save(
        tight_client,
        {
            "name": "slow hook",
            "trigger": {"type": "webhook", "respond": "wait"},
            "steps": [
                {"name": "wait", "connector": "delay", "input": {"seconds": 0.9}},
                {"name": "wait2", "connector": "delay", "input": {"seconds": 0.9}},
                {"name": "reply", "connector": "respond", "input": {"body": "late"}},
            ],
        },
    )
    with httpx.Client(verify=tight.client_ssl(), timeout=10) as anon:
        t0 = time.monotonic()
        r = anon.post(wf["webhook_url"], json={})
    assert r.status_code == 504
    assert r.json()["error"]["limit"] == "webhook_reply_timeout_s"
    assert time.monotonic() - t0 < 5
    done = wait_done(tight_client, r.json()["error"]["execution_id"])
    assert done["status"] == "succeeded"  # the execution goes on; only the wait ended


def test_limit_api_rate(tight, tight_client):
    _, token = tight.create_account("Rate")
    with tight.client(token) as c:
        codes = [c.get("/v1/workflows").status_code for _ in range(260)]
    assert 429 in codes
    r = None
    with tight.client(token) as c:
        r = c.get("/v1/workflows")
    if r.status_code == 429:
        assert r.json()["error"]["limit"] == "api_rate_per_s"
        assert int(r.headers["retry-after"]) >= 1
