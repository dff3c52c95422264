"""Restart safety (W8): SIGKILL the server while executions run; after a restart every one
completes, none is lost and none completes twice."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter

from tests.support.flows import save, wait_done
from tests.support.server import free_port, make_server

N = 12  # under the worker pool size (16), so all are mid-run when the server dies


def test_sigkill_mid_run_then_restart_completes_each_execution_once(tmp_path, target):
    target.script("/started", (200, {}, {"ok": True}))
    target.script("/finished", (200, {}, {"ok": True}))
    server = make_server(tmp_path)
    server.start()
    try:
        _, token = server.create_account("Restart")
        doc = {
            "name": "slow job",
            "trigger": {"type": "manual"},
            "steps": [
                {
                    "name": "start",
                    "connector": "http",
                    "input": {
                        "method": "POST",
                        "url": f"{target.url}/started",
                        "json": {"n": "$.trigger.body.n"},
                    },
                },
                {"name": "work", "connector": "delay", "input": {"seconds": 4}},
                {
                    "name": "finish",
                    "connector": "http",
                    "input": {
                        "method": "POST",
                        "url": f"{target.url}/finished",
                        "json": {"n": "$.trigger.body.n"},
                    },
                },
            ],
        }
        with server.client(token) as client:
            wf = save(client, doc)
            ids = []
            for n in range(N):
                r = client.post(f"/v1/workflows/{wf['id']}/run", json={"input": {"n": n}})
                assert r.status_code == 202
                ids.append(r.json()["execution_id"])
        # Kill once every first step is recorded (not merely sent: a step whose call went out
        # but whose record did not commit is run again on resume, at least once by design).
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            db = sqlite3.connect(server.data_dir / "us.db")
            (recorded,) = db.execute(
                "SELECT count(*) FROM step_runs WHERE path = 'start'"
            ).fetchone()
            db.close()
            if recorded == N:
                break
            time.sleep(0.05)
        assert len(target.hits("/started")) == N
        server.kill()  # SIGKILL: no drain, no goodbye
        assert not target.hits("/finished")

        db = sqlite3.connect(server.data_dir / "us.db")
        statuses = Counter(s for (s,) in db.execute("SELECT status FROM executions"))
        db.close()
        assert statuses == {"running": N}

        server.port = free_port()
        server.start()
        with server.client(token) as client:
            done = [wait_done(client, i, timeout=60) for i in ids]
        assert {d["status"] for d in done} == {"succeeded"}
        # The first step was recorded before the kill: it is not run again on resume.
        assert Counter(r.json()["n"] for r in target.hits("/started")) == {n: 1 for n in range(N)}
        assert Counter(r.json()["n"] for r in target.hits("/finished")) == {n: 1 for n in range(N)}
        for d in done:
            assert [s["name"] for s in d["steps"]] == ["start", "work", "finish"]
        db = sqlite3.connect(server.data_dir / "us.db")
        per_step = db.execute(
            "SELECT execution_id, path, count(*) FROM step_runs GROUP BY 1, 2 HAVING count(*) > 1"
        ).fetchall()
        db.close()
        assert per_step == []
    finally:
        server.stop()


def test_graceful_stop_hands_back_and_resumes(tmp_path, target):
    """SIGTERM drains: what cannot finish within the grace period is handed back."""
    server = make_server(tmp_path, SEALFLOW_WORKER__SHUTDOWN_GRACE_S="0.5")
    server.start()
    try:
        _, token = server.create_account("Drain")
        doc = {
            "name": "long",
            "trigger": {"type": "manual"},
            "steps": [
                {"name": "work", "connector": "delay", "input": {"seconds": 3}},
                {
                    "name": "done",
                    "connector": "http",
                    "input": {"method": "POST", "url": f"{target.url}/done"},
                },
            ],
        }
        with server.client(token) as client:
            wf = save(client, doc)
            r = client.post(f"/v1/workflows/{wf['id']}/run", json={})
            execution_id = r.json()["execution_id"]
            time.sleep(0.5)
        server.stop()
        db = sqlite3.connect(server.data_dir / "us.db")
        ((status, owner),) = db.execute(
            "SELECT status, lease_owner FROM executions WHERE id = ?", (execution_id,)
        ).fetchall()
        db.close()
        assert (status, owner) == ("queued", None)
        server.port = free_port()
        server.start()
        with server.client(token) as client:
            assert wait_done(client, execution_id)["status"] == "succeeded"
        assert len(target.hits("/done")) == 1
    finally:
        server.stop()
