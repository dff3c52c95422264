"""The real server with HashiCorp Vault Transit (an OpenBao dev server) as its key provider,
wired through bootstrap as an operator would configure it: the key is created on first
start, data and authentications are sealed under it, `keys rotate` moves every keyset to a
new Transit key version while the server keeps serving, and the key file provider is not
used at all."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest

from tests.support.bao import Bao
from tests.support.flows import run, save
from tests.support.server import make_server
from tests.support.target import Target


def test_serve_with_transit_seals_rotates_and_keeps_serving(
    bao: Bao, target: Target, tmp_path: Path
) -> None:
    key_name = f"sealflow-e2e-{secrets.token_hex(4)}"
    server = make_server(
        tmp_path, SEALFLOW_KEYS__PROVIDER="transit",
        SEALFLOW_KEYS__TRANSIT__ADDRESS=bao.address, SEALFLOW_KEYS__TRANSIT__TOKEN=bao.token,
        SEALFLOW_KEYS__TRANSIT__KEY_NAME=key_name,
    )
    server.start()
    try:
        _, token = server.create_account("Transit")
        canary = f"CANARY{secrets.token_hex(10)}"
        target.script("/t", (200, {}, {"ok": True}))
        with server.client(token) as api:
            auth = api.post("/v1/authentications", json={
                "name": "svc", "type": "bearer", "secret": {"token": canary}})
            assert auth.status_code == 201, auth.text
            wf = save(api, {"name": "t", "trigger": {"type": "manual"}, "steps": [
                {"name": "call", "connector": "http", "auth": auth.json()["id"],
                 "input": {"method": "GET", "url": f"{target.url}/t"}}]})
            assert run(api, wf["id"], {"note": canary})["status"] == "succeeded"

            rotated = server.cli("keys", "rotate", "--region", "us")
            assert "rotated to KEK version 2" in rotated.stdout, rotated.stdout + rotated.stderr
            status = json.loads(server.cli("keys", "status", "--region", "us").stdout)[0]
            assert "transit" in json.dumps(status["provider"])
            assert status["keysets_by_kek_version"] == {"2": 1}

            done = run(api, wf["id"], {"note": canary})  # the server reads the rewrapped keyset
            assert done["status"] == "succeeded", done
            assert done["trigger"]["body"] == {"note": canary}
        assert target.hits("/t")[-1].headers["authorization"] == f"Bearer {canary}"
        assert not list((server.data_dir / "keys").glob("*.kek.json"))  # no local key file
        stored = b"".join(p.read_bytes() for p in server.data_dir.rglob("*.db*"))
        assert canary.encode() not in stored
    finally:
        server.stop()


def test_a_wrong_transit_token_stops_the_start_with_a_clear_error(
    bao: Bao, tmp_path: Path
) -> None:
    token = f"wrong-{secrets.token_hex(8)}"
    server = make_server(
        tmp_path, SEALFLOW_KEYS__PROVIDER="transit",
        SEALFLOW_KEYS__TRANSIT__ADDRESS=bao.address, SEALFLOW_KEYS__TRANSIT__TOKEN=token,
    )
    with pytest.raises(RuntimeError) as err:
        server.start(timeout=20)
    assert "permission denied" in str(err.value).lower() or "403" in str(err.value)
    assert "Traceback" not in str(err.value)
    assert token not in str(err.value)
