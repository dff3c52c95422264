"""Customer data at rest (S6) and crypto-shredding (S7), through the real server: a canary run
through a workflow is absent from the region's database files (WAL included) yet readable
through the API; a moved ciphertext and a shredded account answer clear errors, never a 500.
Key rotation and retirement (S4): tests/e2e/test_keys_rotation.py."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sealflow.bootstrap import build_cells
from sealflow.config import Settings
from tests.support.flows import run, save
from tests.support.server import Server, make_server
from tests.support.target import Target


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short keyset cache, so a shred made by this test process is seen by the server soon.
    s = make_server(Path(tmp_path_factory.mktemp("sealed")), SEALFLOW_KEYS__CACHE_TTL_S="0.2")
    s.start()
    yield s
    s.stop()


def _canary_flow(target: Target, canary: str) -> dict:
    target.script(f"/{canary}", (200, {}, {"echo": canary}))
    return {
        "name": "canary",
        "trigger": {"type": "manual"},
        "steps": [
            {
                "name": "fetch",
                "connector": "http",
                "input": {"method": "GET", "url": f"{target.url}/{canary}"},
            },
            {
                "name": "shape",
                "connector": "transform",
                "input": {"expression": "{'from_trigger': $.trigger.body.note}"},
            },
        ],
    }


def _db_bytes(server: Server, region: str = "us") -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        path = server.data_dir / f"{region}.db{suffix}"
        if path.exists():
            out += path.read_bytes()
    return out


def test_canary_is_absent_at_rest_and_readable_through_the_api(server, target):
    _, token = server.create_account("Canary")
    canary = "CANARY" + secrets.token_hex(12)
    with server.client(token) as client:
        wf = save(client, _canary_flow(target, canary))
        done = run(client, wf["id"], {"note": canary})
        document = client.get(f"/v1/workflows/{wf['id']}/versions/1").json()["document"]
    assert done["status"] == "succeeded", done
    assert done["trigger"]["body"] == {"note": canary}
    fetch, shape = done["steps"]
    assert fetch["output"]["body"] == {"echo": canary}
    assert any(canary in line["msg"] for line in fetch["logs"])
    assert shape["output"] == {"from_trigger": canary}
    assert done["result"] == {"from_trigger": canary}
    assert canary in json.dumps(document)
    stored = _db_bytes(server)
    assert (server.data_dir / "us.db-wal").exists()
    assert canary.encode() not in stored
    assert canary.encode() not in (server.data_dir / "keys" / "us.keys.db").read_bytes()
    assert server.log_path is not None
    assert canary not in server.log_path.read_text(errors="replace")


def test_a_moved_ciphertext_fails_with_a_clear_error(server, target):
    _, token = server.create_account("Mover")
    with server.client(token) as client:
        wf = save(client, _canary_flow(target, "moved" + secrets.token_hex(4)))
        first = run(client, wf["id"], {"note": "one"})
        second = run(client, wf["id"], {"note": "two"})
        db = sqlite3.connect(server.data_dir / "us.db", timeout=10)
        with db:
            db.execute(
                "UPDATE executions SET trigger_payload = "
                "(SELECT trigger_payload FROM executions WHERE id = ?) WHERE id = ?",
                (first["id"], second["id"]),
            )
        db.close()
        moved = client.get(f"/v1/executions/{second['id']}")
        intact = client.get(f"/v1/executions/{first['id']}")
    assert moved.status_code == 409, moved.text
    error = moved.json()["error"]
    assert error["code"] == "data_unreadable"
    assert "trigger_payload" in error["message"] and "Traceback" not in moved.text
    assert intact.status_code == 200
    assert intact.json()["trigger"]["body"] == {"note": "one"}


def test_a_shredded_account_answers_data_destroyed(server, target):
    account_id, token = server.create_account("Leaver")
    with server.client(token) as client:
        wf = save(client, _canary_flow(target, "gone" + secrets.token_hex(4)))
        done = run(client, wf["id"], {"note": "bye"})
    cells = build_cells(Settings(data_dir=server.data_dir))
    try:
        assert cells["us"].vault.shred(account_id)
    finally:
        cells.dispose()
    time.sleep(0.3)
    with server.client(token) as client:
        r = client.get(f"/v1/executions/{done['id']}")
    assert r.status_code == 410, r.text
    assert r.json()["error"]["code"] == "data_destroyed"
    assert "Traceback" not in r.text



def test_an_insecure_key_file_stops_init_and_serve_with_one_line(tmp_path):
    s = make_server(tmp_path)
    assert s.cli("init").returncode == 0
    key_file = s.data_dir / "keys" / "us.kek.json"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key_file.chmod(0o644)
    for command in (("init",), ("--port", str(s.port), "serve")):
        done = s.cli(*command, check=False)
        assert done.returncode != 0
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "refuses to start" in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_key_settings_never_print_the_transit_token():
    settings = Settings.model_validate(
        {"keys": {"provider": "transit", "transit": {"address": "https://kms.example:8200",
                                                      "token": "hvs.do-not-print"}}}
    )
    assert "do-not-print" not in repr(settings) and "do-not-print" not in str(settings.keys)
    assert settings.transit_key_name("eu") == "sealflow-eu"
    assert settings.keys.transit.token.get_secret_value() == "hvs.do-not-print"
