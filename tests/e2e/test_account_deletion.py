"""Deleting an account through the real server (D4, S7, D6): `DELETE /v1/account` shreds its
keys, removes its rows and answers the deletion record; its token and webhooks stop working
at once. Restoring an older copy of the region's data database brings rows back but none of
their data (410 data_destroyed), and restoring an older copy of the key store as well does
not revive the keys: the tombstone log beside it names the account, and the next start drops
the revived keyset. The operator CLI deletes again what a restore brought back."""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path

import httpx

from tests.support.flows import save, wait_done
from tests.support.server import make_server
from tests.support.target import Target

HOOK = {
    "name": "inbound",
    "trigger": {"type": "webhook"},
    "steps": [{"name": "echo", "connector": "transform",
               "input": {"expression": "{'got': $.trigger.body.n}"}}],
}


def _slow(target: Target) -> dict:
    target.script("/slow", (200, {"X-Test-Delay": "1.0"}, {"late": True}))
    return {"name": "slow", "trigger": {"type": "manual"},
            "steps": [{"name": "call", "connector": "http",
                       "input": {"method": "GET", "url": f"{target.url}/slow"}}]}


def _backup(live: Path, copy: Path) -> None:
    """A consistent copy of a live SQLite file, WAL included (the backup API)."""
    copy.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(live), sqlite3.connect(copy)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _restore(copy: Path, live: Path) -> None:
    """Puts an older copy back over a stopped server's file (its WAL must not be replayed)."""
    for suffix in ("-wal", "-shm"):
        Path(f"{live}{suffix}").unlink(missing_ok=True)
    shutil.copy(copy, live)


def _query(path: Path, sql: str, *args: object) -> list[tuple]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def _file_bytes(path: Path) -> bytes:
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal")
                    if Path(f"{path}{s}").exists())


def _destroyed(response: httpx.Response) -> bool:
    return response.status_code == 410 and response.json()["error"]["code"] == "data_destroyed"


def _delete(client: httpx.Client, body: object) -> httpx.Response:
    return client.request("DELETE", "/v1/account", json=body)


def test_a_deleted_account_stays_deleted_through_restores(tmp_path: Path, target: Target) -> None:
    server = make_server(tmp_path)
    data, keys = server.data_dir / "us.db", server.data_dir / "keys" / "us.keys.db"
    backups = tmp_path / "backups"
    server.start()
    try:
        victim, token = server.create_account("Leaving Ltd")
        _, other_token = server.create_account("Staying Ltd")
        with server.client(token) as client, server.client() as anon:
            hook = save(client, HOOK)
            slow = save(client, _slow(target))
            runs = [anon.post(hook["webhook_url"], json={"n": n}).json()["execution_id"]
                    for n in range(3)]
            done = [wait_done(client, r) for r in runs]
        assert [d["result"] for d in done] == [{"got": n} for n in range(3)]
        with server.client(other_token) as other:
            other_hook = save(other, HOOK)

        # The "older backup": both stores copied while the server runs.
        _backup(data, backups / "us.db")
        _backup(keys, backups / "us.keys.db")
        (blob,) = _query(keys, "SELECT keyset FROM account_keysets WHERE account_id = ?",
                         victim)[0]

        with server.client(token) as client, server.client() as anon:
            # One execution is in flight (its HTTP call takes a second) while it goes.
            in_flight = client.post(f"/v1/workflows/{slow['id']}/run", json={})
            assert in_flight.status_code == 202
            deadline = time.monotonic() + 10
            while not target.hits("/slow") and time.monotonic() < deadline:
                time.sleep(0.02)

            missing = _delete(client, {})
            assert missing.status_code == 422
            assert [i["path"] for i in missing.json()["error"]["issues"]] == ["$.body.confirm"]
            wrong = _delete(client, {"confirm": "another-account"})
            assert wrong.status_code == 409
            assert wrong.json()["error"]["code"] == "confirmation_mismatch"
            assert wrong.json()["error"]["issues"][0]["path"] == "$.confirm"

            started = time.monotonic()
            deleted = _delete(client, {"confirm": victim})
            took = time.monotonic() - started
            assert deleted.status_code == 200, deleted.text
            record = deleted.json()
            # (a) its token and its webhook are gone at once.
            assert client.get("/v1/account").status_code == 401
            assert anon.post(hook["webhook_url"], json={"n": 9}).status_code == 404
        assert took < 5, took
        assert record["account_id"] == victim and record["region"] == "us"
        removed = record["removed"]
        assert (removed["accounts"], removed["api_tokens"], removed["workflows"],
                removed["workflow_versions"], removed["executions"]) == (1, 1, 2, 2, 4)
        assert removed["step_runs"] >= 3
        assert "Leaving" not in json.dumps(record)
        assert not _query(data, "SELECT 1 FROM executions WHERE account_id = ?", victim)
        assert _query(data, "SELECT count(*) FROM account_deletions") == [(1,)]
        assert blob not in _file_bytes(keys)  # shredded: no copy left in the key store

        # The in-flight execution ended without taking its worker down: another account's
        # webhook still runs.
        time.sleep(1.2)
        with server.client(other_token) as other, server.client() as anon:
            accepted = anon.post(other_hook["webhook_url"], json={"n": 7})
            assert wait_done(other, accepted.json()["execution_id"])["result"] == {"got": 7}

        # (b) the older data database comes back: rows, but no data.
        server.stop()
        _restore(backups / "us.db", data)
        server.start()
        with server.client(token) as client, server.client() as anon:
            assert client.get("/v1/account").json()["id"] == victim  # the row is back
            assert _destroyed(client.get(f"/v1/executions/{runs[0]}"))
            assert _destroyed(client.get("/v1/workflows"))
            assert _destroyed(client.get(f"/v1/workflows/{hook['id']}/versions/1"))
            assert _destroyed(anon.post(hook["webhook_url"], json={"n": 1}))

        # (c) the older key store comes back too, keyset row and all.
        server.stop()
        _restore(backups / "us.keys.db", keys)
        assert _query(keys, "SELECT count(*) FROM account_keysets WHERE account_id = ?",
                      victim) == [(1,)]
        assert _query(keys, "SELECT count(*) FROM tombstones") == [(0,)]
        server.start()
        with server.client(token) as client:
            assert _destroyed(client.get(f"/v1/executions/{runs[0]}"))
        assert _query(keys, "SELECT count(*) FROM account_keysets WHERE account_id = ?",
                      victim) == [(0,)]
        assert _query(keys, "SELECT account_id FROM tombstones") == [(victim,)]
        assert blob not in _file_bytes(keys)

        # The operator deletes again what the restore brought back.
        refused = server.cli("accounts", "delete", "--account", victim, check=False)
        assert refused.returncode != 0 and "--yes" in refused.stderr
        again = json.loads(server.cli("accounts", "delete", "--account", victim, "--yes").stdout)
        assert again["removed"]["executions"] == 3 and again["removed"]["accounts"] == 1
        with server.client(token) as client, server.client() as anon:
            assert client.get("/v1/account").status_code == 401
            assert anon.post(hook["webhook_url"], json={"n": 1}).status_code == 404
    finally:
        server.stop()
    log = (server.log_path or server.data_dir / "server.log").read_text(errors="replace")
    assert "Traceback" not in log and "worker failed" not in log, log[-3000:]
