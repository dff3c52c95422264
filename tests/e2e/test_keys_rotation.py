"""Key rotation (S4) through the real CLI while the real server runs: `keys rotate` rewraps every
keyset under a new KEK version (an interrupted one is resumed), `keys retire` then stops the
old version (a keyset from an old copy of the key store no longer unwraps) and refuses while
keysets still need it; `keys rotate-data` re-encrypts every record of an account under its
new data key while workflows keep running, then removes the old key."""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sealflow.clock import SystemClock
from sealflow.db.engine import make_engine
from sealflow.vault.errors import DecryptionFailed
from sealflow.vault.keystore import KeyStore
from sealflow.vault.providers.local_file import LocalFileProvider
from sealflow.vault.vault import Vault
from tests.support.flows import get_paced, run, save, wait_done
from tests.support.server import Server, make_server

FLOW = {
    "name": "rotor",
    "trigger": {"type": "manual"},
    "steps": [
        {"name": "shape", "connector": "transform",
         "input": {"expression": "{'echo': $.trigger.body.note}"}},
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # A short keyset cache: the server sees rotations soon, and rotate-data waits little.
    s = make_server(Path(tmp_path_factory.mktemp("rotation")), SEALFLOW_KEYS__CACHE_TTL_S="0.2")
    s.start()
    yield s
    s.stop()


def one_error_line(done: Any) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return str(lines[0])


def sealed(server: Server, sql: str, *args: Any) -> Any:
    db = sqlite3.connect(server.data_dir / "us.db", timeout=10)
    try:
        with db:
            return db.execute(sql, args).fetchone()
    finally:
        db.close()


def status(server: Server, *args: str) -> dict[str, Any]:
    return json.loads(server.cli("keys", "status", *args).stdout)[0]  # type: ignore[no-any-return]


def every_value_opens(server: Server) -> int:
    """Opens every sealed value of the region with a vault that has nothing cached (each
    keyset unwrapped from the key store now); returns how many there were."""
    from sqlalchemy import select

    from sealflow.services.keys import SEALED_COLUMNS

    data = make_engine(f"sqlite:///{server.data_dir / 'us.db'}")
    store = make_engine(f"sqlite:///{server.data_dir / 'keys' / 'us.keys.db'}")
    vault = Vault("us", KeyStore(store, SystemClock()),
                  LocalFileProvider(server.data_dir / "keys" / "us.kek.json"), SystemClock())
    opened = 0
    try:
        with data.connect() as conn:
            for entry in SEALED_COLUMNS:
                for row in conn.execute(select(entry.table)):
                    for name in entry.columns:
                        text = getattr(row, name)
                        if text is not None:
                            vault.decrypt(row.account_id, entry.table.name, entry.row_id(row),
                                          name, base64.urlsafe_b64decode(text))
                            opened += 1
    finally:
        data.dispose()
        store.dispose()
    return opened


def test_kek_rotation_resumes_and_retirement_stops_the_old_version(server, tmp_path):
    _, token = server.create_account("Kek")
    key_file = server.data_dir / "keys" / "us.kek.json"
    with server.client(token) as client:
        wf = save(client, FLOW)
        before = run(client, wf["id"], {"note": "before"})
        current = one_error_line(server.cli("keys", "retire", "--region", "us", "--version", "1",
                                            check=False))
        assert "cannot retire KEK version 1" in current and "current version is 1" in current

        # A copy of the key store as it is now (every keyset under KEK version 1).
        old_store = tmp_path / "old.keys.db"
        src = sqlite3.connect(server.data_dir / "keys" / "us.keys.db")
        dst = sqlite3.connect(old_store)
        src.backup(dst)
        src.close()
        dst.close()

        # An interrupted rotation: the new KEK version exists, no keyset is rewrapped yet.
        assert LocalFileProvider(key_file).rotate() == 2
        behind = one_error_line(server.cli("keys", "retire", "--region", "us", "--version", "1",
                                           check=False))
        assert "still wrapped under KEK version 1" in behind
        rotated = server.cli("keys", "rotate", "--region", "us")
        assert "resumed: finished the rotation to KEK version 2" in rotated.stdout
        s = status(server, "--region", "us")
        assert s["kek_version"] == 2 and s["keysets_by_kek_version"] == {
            "2": sum(s["keysets_by_kek_version"].values())}, s  # no keyset left on version 1
        assert "unknown" not in s["records_by_data_key"]
        assert every_value_opens(server) == sum(s["records_by_data_key"].values()) > 0

        payload = sealed(server, "SELECT account_id, trigger_payload FROM executions "
                                 "WHERE id = ?", before["id"])

        def old_copy_reads() -> bytes:
            engine = make_engine(f"sqlite:///{old_store}")
            try:
                vault = Vault("us", KeyStore(engine, SystemClock()), LocalFileProvider(key_file),
                              SystemClock())
                return vault.decrypt(payload[0], "executions", before["id"], "trigger_payload",
                                     base64.urlsafe_b64decode(payload[1]))
            finally:
                engine.dispose()

        assert json.loads(old_copy_reads())["body"] == {"note": "before"}  # v1 decrypts
        retired = server.cli("keys", "retire", "--region", "us", "--version", "1")
        assert "KEK versions up to 1 retired (current 2)" in retired.stdout
        with pytest.raises(DecryptionFailed, match=r"\(KEK version 1\) could not be unwrapped"):
            old_copy_reads()
        regions = json.loads(server.cli("keys", "status").stdout)
        assert [r["region"] for r in regions] == ["us", "eu", "apac"]
        assert regions[0]["provider"]["retired"] == [1]
        assert every_value_opens(server) > 0
        # Everything current still decrypts: old records, and new ones written now.
        again = client.get(f"/v1/executions/{before['id']}")
        after = run(client, wf["id"], {"note": "after"})
    assert again.status_code == 200 and again.json()["trigger"]["body"] == {"note": "before"}
    assert after["status"] == "succeeded" and after["result"] == {"echo": "after"}


def test_rotate_data_reencrypts_every_record_while_workflows_run(server):
    account_id, token = server.create_account("Data")
    with server.client(token) as client:
        wf = save(client, FLOW)
        first = [run(client, wf["id"], {"note": f"s{i}"}) for i in range(3)]
        old_key = status(server, "--account", account_id)["data_keys"]
        assert len(old_key) == 1
        old_text = sealed(server, "SELECT trigger_payload FROM executions WHERE id = ?",
                          first[0]["id"])[0]

        # The server keeps writing records of this account during the rotation.
        started: list[str] = []
        stop = threading.Event()

        def load() -> None:
            with server.client(token) as c:
                while not stop.is_set():
                    r = c.post(f"/v1/workflows/{wf['id']}/run",
                               json={"input": {"note": f"during{len(started)}"}})
                    assert r.status_code == 202, r.text
                    started.append(r.json()["execution_id"])
                    stop.wait(0.05)  # below the API rate limit

        writer = threading.Thread(target=load)
        writer.start()
        try:
            done = server.cli("keys", "rotate-data", "--account", account_id,
                              "--batch-size", "2")
        finally:
            stop.set()
            writer.join(30)
        during = [wait_done(client, e) for e in started]
        assert started and all(d["status"] == "succeeded" for d in during)
        out = done.stdout
        assert f"removed older data key(s) {old_key[0]}" in out, out + done.stderr
        new_key = int(out.split("new primary data key ")[1].split(";")[0])
        assert new_key != old_key[0]

        s = status(server, "--account", account_id)
        assert s["data_keys"] == [new_key]
        assert list(s["records_by_data_key"]) == [str(new_key)], s
        # Every API read still works, for the records from before and during the rotation.
        for i, e in enumerate(first):
            body = get_paced(client, f"/v1/executions/{e['id']}").json()
            assert body["trigger"]["body"] == {"note": f"s{i}"}
            assert body["result"] == {"echo": f"s{i}"}
        for d in during:
            r = get_paced(client, f"/v1/executions/{d['id']}")
            assert r.status_code == 200 and r.json()["result"] == d["result"]
        document = client.get(f"/v1/workflows/{wf['id']}/versions/1")
        assert document.status_code == 200 and document.json()["document"]["name"] == "rotor"

        # A ciphertext of the removed key, put back in its own place: it no longer opens.
        sealed(server, "UPDATE executions SET trigger_payload = ? WHERE id = ?", old_text,
               first[0]["id"])
        gone = client.get(f"/v1/executions/{first[0]['id']}")
        assert gone.status_code == 409 and gone.json()["error"]["code"] == "data_unreadable"

        kept = server.cli("keys", "rotate-data", "--account", account_id, "--keep-old")
        assert "older data keys kept" in kept.stdout
        assert f"executions.trigger_payload of {first[0]['id']} does not decrypt" in kept.stderr
        s = status(server, "--account", account_id)
    newest = s["data_keys"][1]
    assert s["data_keys"] == [new_key, newest]
    counts = s["records_by_data_key"]
    assert counts.pop(str(old_key[0])) == 1  # the unreadable value, left as it was
    assert list(counts) == [str(newest)]
    sealed(server, "DELETE FROM step_runs WHERE execution_id = ?", first[0]["id"])
    sealed(server, "DELETE FROM executions WHERE id = ?", first[0]["id"])  # tidy for others
