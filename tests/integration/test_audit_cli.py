"""`sealflow audit` on a real data directory: key, checkpoint, verify (exit 1 naming the
record), inclusion and consistency proofs that check against the signed roots."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sealflow.audit import log, merkle
from sealflow.audit.records import SYSTEM, Action, AuditEvent
from sealflow.cli import app
from sealflow.db.engine import make_engine
from sealflow.db.migrate import upgrade

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import os

    for name in [k for k in os.environ if k.startswith("SEALFLOW_")]:
        monkeypatch.delenv(name)
    engine = make_engine(f"sqlite:///{tmp_path / 'us.db'}")
    upgrade(engine)
    with engine.begin() as conn:
        for i in range(1, 13):
            log.append(conn, AuditEvent("us", "acc", SYSTEM, Action.PURGE, f"execution:{i}", T0))
    engine.dispose()
    return tmp_path


def run(data_dir: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), "audit", *args])
    return result.exit_code, result.output


def test_key_checkpoint_verify_and_proofs(data_dir: Path) -> None:
    code, out = run(data_dir, "key", "--region", "us")
    assert code == 0
    key = json.loads(out)
    assert (data_dir / "keys" / "audit-us.ed25519").stat().st_mode & 0o777 == 0o600
    code, out = run(data_dir, "checkpoint", "--region", "us")
    assert code == 0 and json.loads(out)["checkpoint"]["tree_size"] == 12
    root = bytes.fromhex(json.loads(out)["checkpoint"]["root"])
    code, out = run(data_dir, "verify", "--region", "us", "--public-key", key["public_key"])
    assert code == 0, out
    assert "region us: ok, 12 records, 1 checkpoints, 12 covered" in out

    code, out = run(data_dir, "prove", "--seq", "5", "--region", "us")
    proof = json.loads(out)
    assert proof["checkpoint"]["root"] == root.hex()
    assert merkle.verify_inclusion(4, 12, bytes.fromhex(proof["leaf_hash"]),
                                   [bytes.fromhex(h) for h in proof["path"]], root)
    code, out = run(data_dir, "consistency", "--from", "7", "--region", "us")
    cons = json.loads(out)
    assert cons["second"] == 12 and cons["checkpoints"][0] is None
    assert merkle.verify_consistency(7, 12, bytes.fromhex(cons["first_root"]), root,
                                     [bytes.fromhex(h) for h in cons["path"]])
    code, out = run(data_dir, "prove", "--seq", "13", "--region", "us")
    assert code == 1 and "not within" in out


def test_verify_exits_1_and_names_the_tampered_record(data_dir: Path) -> None:
    run(data_dir, "checkpoint", "--region", "us")
    with sqlite3.connect(data_dir / "us.db") as conn:
        conn.execute("DROP TRIGGER audit_records_no_delete")
        conn.execute("DELETE FROM audit_records WHERE seq = 5")
    code, out = run(data_dir, "verify", "--region", "us")
    assert code == 1
    assert "region us: TAMPERED" in out
    assert "record 5: missing (the next record present is 6): deleted" in out
    code, out = run(data_dir, "verify", "--region", "us", "--json")
    assert code == 1 and json.loads(out)["first_bad_seq"] == 5


def test_verify_without_the_key_warns_that_signatures_are_unchecked(data_dir: Path) -> None:
    code, out = run(data_dir, "verify", "--region", "us")
    assert code == 0 and "signatures not checked" in out
    code, out = run(data_dir, "verify", "--region", "xx")
    assert code == 1 and "unknown region" in out
