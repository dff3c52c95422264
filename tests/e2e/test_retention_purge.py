"""Retention and purge through a real `sealflow serve` and the real CLI (D3): the policy set by
PATCH /v1/account/settings and `sealflow retention`, refused under 24 hours with the field
named; `sealflow purge --dry-run` lists and keeps, `sealflow purge` removes, while the server
runs; the server writes its log file under <data_dir>/logs."""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sealflow.logs import log_file_name
from tests.support.server import Server, make_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # No embedded workers: the server's own housekeeping purge (a minute after start) must
    # not race the CLI's in these tests; the CLI runs the same service.
    s = make_server(Path(tmp_path_factory.mktemp("retention")), SEALFLOW_LOG_LEVEL="info",
                    SEALFLOW_EMBEDDED_WORKERS="false")
    s.start()
    yield s
    s.stop()


def test_policy_through_the_api(server: Server) -> None:
    account, token = server.create_account("Retention API")
    with server.client(token) as c:
        assert c.get("/v1/account/settings").json()["retention"] == {
            "executions": "10d", "logs": "30d"}
        r = c.patch("/v1/account/settings", json={"retention": {"executions": "12h"}})
        assert r.status_code == 422, r.text
        assert "$.retention.executions" in r.text and "at least 24h" in r.text
        r = c.patch("/v1/account/settings", json={"retention": {"logs": "31d"}})
        assert r.status_code == 422 and "at most 30d" in r.text
        r = c.patch("/v1/account/settings",
                    json={"retention": {"executions": "48h", "logs": "5d"}})
        assert r.status_code == 200, r.text
        assert r.json()["retention"] == {"executions": "2d", "logs": "5d"}
        assert c.get("/v1/account/settings").json()["retention"] == {
            "executions": "2d", "logs": "5d"}
    shown = server.cli("retention", "show", "--account", account).stdout
    assert f"{account}          2d      5d" in shown


def test_cli_sets_refuses_and_purges_while_serving(server: Server) -> None:
    account, _ = server.create_account("Retention CLI")
    done = server.cli("retention", "set", "--account", account, "--executions", "12h",
                      check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().startswith("error: --executions: must be at least 24h")
    out = server.cli("retention", "set", "--account", account, "--logs", "3d").stdout
    # Only --logs given: the data lifetime keeps its value; the policy in force is printed.
    assert "execution data kept 10d, debug logs kept 3d" in out

    db = server.data_dir / "us.db"
    old = (datetime.now(UTC) - timedelta(days=40)).strftime("%Y-%m-%d %H:%M:%S.%f")
    with sqlite3.connect(db, timeout=10) as conn:
        for _ in range(3):
            eid = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO executions (id, account_id, workflow_id, workflow_version, status,"
                " trigger_type, trigger_payload, call_depth, respond_wait, platform_attempts,"
                " steps_run, cancel_requested, run_after, created_at, finished_at)"
                " VALUES (?,?,?,?,?,?,?,0,0,0,0,0,?,?,?)",
                (eid, account, "wf", 1, "succeeded", "webhook",
                 base64.urlsafe_b64encode(os.urandom(64)).decode(), old, old, old))
            conn.execute(
                "INSERT INTO step_runs (execution_id, account_id, seq, path, step_name,"
                " connector, operation, status, attempts, started_at)"
                " VALUES (?,?,0,'a','a','transform','run','succeeded',1,?)", (eid, account, old))
    logs = server.data_dir / "logs"
    stale = logs / log_file_name((datetime.now(UTC) - timedelta(days=40)).date())
    stale.write_text("{}\n")

    dry = server.cli("purge", "--dry-run").stdout
    assert "(dry run: nothing deleted)" in dry and stale.name in dry
    [line] = [ln for ln in dry.splitlines() if account in ln]
    assert line.split()[1:4] == ["rows", "3", "3"]
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM executions WHERE account_id = ?",
                            (account,)).fetchone()[0] == 3
    assert stale.exists()

    out = server.cli("purge").stdout
    assert "3 execution(s) and 3 step run(s) deleted" in out
    assert "1 log file(s) deleted" in out
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM executions WHERE account_id = ?",
                            (account,)).fetchone()[0] == 0
        run = conn.execute("SELECT trigger, executions_deleted, log_files_deleted, finished_at"
                           " FROM purge_runs ORDER BY id DESC LIMIT 1").fetchone()
    assert run[:3] == ("cli", 3, 1) and run[3] is not None
    assert not stale.exists()
    assert "nothing due" in server.cli("purge").stdout


def test_the_server_writes_its_log_file(server: Server) -> None:
    with server.client() as c:
        c.get("/healthz?probe=1")
    today = server.data_dir / "logs" / log_file_name(datetime.now(UTC).date())
    assert today.exists()
    assert oct(today.stat().st_mode & 0o777) == "0o600"
    assert '"path":"/healthz"' in today.read_text().replace(" ", "")
