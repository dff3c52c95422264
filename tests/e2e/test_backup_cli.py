"""`sealflow backup ...` run for real (subprocesses over real files, D6): a backup and a
restore round-trip the data, a restore after an account deletion brings its rows back but
none of its data, damaged or foreign files are refused with one clear line and nothing
changes, the tombstone log is never touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml


class Cli:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SEALFLOW_")}
        self.env.update({"SEALFLOW_LOG_LEVEL": "warning", "SEALFLOW_BACKUPS__CHUNK_BYTES": "4096"})

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sealflow.cli", "--data-dir", str(self.data_dir), *args],
            env=self.env, capture_output=True, text=True, timeout=120, check=False)

    def ok(self, *args: str) -> str:
        done = self(*args)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        return done.stdout


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def _flow(name: str, canary: str) -> str:
    return yaml.safe_dump({"name": name, "trigger": {"type": "manual"},
                           "steps": [{"name": "say", "connector": "transform",
                                      "input": {"expression": f"'{canary}'"}}]})


def _db(cli: Cli) -> bytes:
    return b"".join(Path(f"{cli.data_dir / 'us.db'}{s}").read_bytes() for s in ("", "-wal")
                    if Path(f"{cli.data_dir / 'us.db'}{s}").exists())


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    c = Cli(tmp_path / "data")
    c.ok("migrate")
    return c


def test_backup_restore_round_trip_and_shredded_data_stays_shredded(cli: Cli,
                                                                    tmp_path: Path) -> None:
    canary = f"canary-{uuid.uuid4().hex}"
    account = json.loads(cli.ok("accounts", "create", "--name", "Kept Ltd"))["id"]
    (tmp_path / "flow.yaml").write_text(_flow("first", canary))
    first = json.loads(cli.ok("workflows", "import", str(tmp_path / "flow.yaml"),
                              "--account", account))["id"]

    created = cli("backup", "create", "--region", "us")
    assert created.returncode == 0, created.stderr
    assert "encrypt" in created.stderr  # the progress bars
    backup = Path(created.stdout.split(": ", 1)[1].split(" (", 1)[0])
    assert backup.parent == cli.data_dir / "backups" / "us" and backup.suffix == ".sfbak"
    assert canary.encode() not in backup.read_bytes()
    listed = json.loads(cli.ok("backup", "list"))
    assert [(b["region"], b["path"]) for b in listed] == [("us", str(backup))]
    assert "ok (region us" in cli.ok("backup", "verify", str(backup))

    # A change after the backup; the restore takes it back.
    (tmp_path / "second.yaml").write_text(_flow("second", "later"))
    second = json.loads(cli.ok("workflows", "import", str(tmp_path / "second.yaml"),
                               "--account", account))["id"]
    assert one_error_line(cli("backup", "restore", str(backup))).endswith("--yes to confirm")
    assert "restored" in cli.ok("backup", "restore", str(backup), "--yes")
    assert canary in cli.ok("workflows", "export", first)
    assert "not found" in one_error_line(cli("workflows", "export", second)).lower()
    assert "region us: ok" in cli.ok("audit", "verify", "--region", "us")

    # The account goes (keys shredded); the backup from before brings rows, not data, back.
    cli.ok("accounts", "delete", "--account", account, "--yes")
    tombstones = cli.data_dir / "keys" / "us.tombstones"
    logged = tombstones.read_bytes()
    restored = cli.ok("backup", "restore", str(backup), "--yes")
    assert account in restored and "stays unreadable" in restored
    assert tombstones.read_bytes() == logged
    destroyed = one_error_line(cli("workflows", "export", first))
    assert "destroyed" in destroyed or "shredded" in destroyed, destroyed
    assert canary not in destroyed


def test_damaged_and_foreign_backups_are_refused_with_one_line(cli: Cli, tmp_path: Path) -> None:
    cli.ok("accounts", "create", "--name", "Careful Ltd")
    created = cli.ok("backup", "create", "--region", "us")
    backup = Path(created.split(": ", 1)[1].split(" (", 1)[0])
    raw = backup.read_bytes()
    at = len(raw) - 5000  # inside a chunk near the end
    damaged = {
        "flipped.sfbak": (raw[:at] + bytes([raw[at] ^ 0x40]) + raw[at + 1:], "fails authentication"),
        "truncated.sfbak": (raw[:-3000], "truncated"),
        "empty.sfbak": (b"", "not a sealflow backup"),
    }
    cli.ok("accounts", "create", "--name", "After Ltd")  # the state a restore would undo
    before = _db(cli)
    for name, (content, words) in damaged.items():
        path = tmp_path / name
        path.write_bytes(content)
        for command in (("backup", "verify", str(path)),
                        ("backup", "restore", str(path), "--yes")):
            line = one_error_line(cli(*command))
            assert name in line and words in line, line
    wrong = one_error_line(cli("backup", "restore", str(backup), "--region", "eu", "--yes"))
    assert "region 'us', not 'eu'" in wrong
    missing = one_error_line(cli("backup", "verify", str(tmp_path / "nothing.sfbak")))
    assert "cannot read" in missing
    assert _db(cli) == before
    assert not list(tmp_path.glob("data/.*"))  # no plaintext copy left behind


def test_the_server_takes_its_daily_backup_and_blocks_restores(tmp_path: Path) -> None:
    from tests.support.server import make_server

    server = make_server(tmp_path, SEALFLOW_BACKUPS__CHUNK_BYTES="4096")
    server.start()
    try:
        account, token = server.create_account("Served Ltd")
        folder = server.data_dir / "backups" / "us"
        deadline = time.monotonic() + 20  # the first housekeeping run, at start
        while not list(folder.glob("*.sfbak")) and time.monotonic() < deadline:
            time.sleep(0.1)
        (backup,) = folder.glob("*.sfbak")
        refused = server.cli("backup", "restore", str(backup), "--yes", check=False)
        assert "in use by another process" in one_error_line(refused)
        with server.client(token) as client:
            assert client.get("/v1/account").json()["id"] == account
    finally:
        server.stop()
    assert "restored" in server.cli("backup", "restore", str(backup), "--yes").stdout
    log = (server.data_dir / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]
