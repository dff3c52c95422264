"""Encrypted backups in-process over real SQLite files and real backup files (D6, S6, S7):
round trip, restores after a shred, refusal of damaged or foreign files with the database
untouched, the daily schedule and its 14-day limit (the clock moved, never slept)."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from sealflow import backup_format as fmt
from sealflow.audit.log import iter_records
from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import BackupSettings, RegionSettings, Settings
from sealflow.core.errors import NotFound
from sealflow.db import tables
from sealflow.db.sealed import DataDestroyed
from sealflow.db.tables import accounts as accounts_table
from sealflow.regions.cells import Cell
from sealflow.secret_files import load_or_create_secret
from sealflow.services import account_deletion, accounts, authentications, backups, workflows
from sealflow.services.accounts import Caller
from sealflow.services.backup_sources import DatabaseInUse
from sealflow.vault.tombstone_log import default_tombstone_log
from tests.support.clock import ManualClock

OPERATOR = Actor(ActorKind.OPERATOR, "cli")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path / "data",
                        regions={"us": RegionSettings(), "eu": RegionSettings()},
                        backups=BackupSettings(chunk_bytes=4096))
    p = build_platform(settings, clock=ManualClock())
    yield p
    p.cells.dispose()


def _flow(canary: str) -> dict:
    return {"name": "canary flow", "trigger": {"type": "manual"},
            "steps": [{"name": "say", "connector": "transform",
                       "input": {"expression": f"'{canary}'"}}]}


def _account(p: Platform, canary: str) -> tuple[Caller, str, str]:
    account, _ = accounts.create_account(p.cells, p.clock, name="Backed Up Ltd", region="us")
    who = Caller(region="us", account_id=account.id, token_id="t")
    flow = workflows.create(p.cells, p.clock, p.registry, p.limits, who, _flow(canary)).workflow
    auth = authentications.create(p.cells, p.clock, who, name="key", type_name="api_key",
                                  shared=True, settings={}, secret={"key": canary},
                                  expires_at=None)
    return who, flow.id, auth.id


def _document(p: Platform, who: Caller, flow_id: str) -> dict:
    return workflows.get_version(p.cells, who, flow_id, 1)["document"]


def _secret(p: Platform, auth_id: str) -> dict[str, str]:
    cell = p.cells["us"]
    with cell.read() as conn:
        row = conn.execute(select(tables.authentications)
                           .where(tables.authentications.c.id == auth_id)).one()
    return authentications.open_secret(cell.vault, row)[0]


def _records(p: Platform, action: Action, region: str = "us") -> list[dict]:
    with p.cells[region].read() as conn:
        bodies = [json.loads(r.record) for r in iter_records(conn)]
    return [b for b in bodies if b["action"] == action]


def _db_state(p: Platform, region: str = "us") -> bytes:
    """The database's files as they are on disk (a refused restore must not change them)."""
    path = p.settings.data_dir / f"{region}.db"
    return b"".join(Path(f"{path}{s}").read_bytes() for s in ("", "-wal")
                    if Path(f"{path}{s}").exists())


def _plaintext(p: Platform, path: Path) -> bytes:
    with path.open("rb") as stream:
        header, aad = fmt.read_header(stream)
        key = fmt.unwrap_key(header, backups.backup_key(p.settings, "us"), region="us")
        return b"".join(fmt.read_chunks(stream, header, aad, key))


def test_round_trip_restores_the_data_and_no_plaintext_leaves(platform: Platform,
                                                              tmp_path: Path) -> None:
    p, cell = platform, platform.cells["us"]
    canary = f"canary-{uuid.uuid4().hex}"
    who, flow_id, auth_id = _account(p, canary)
    seen: list[str] = []
    taken = backups.create_backup(p.settings, cell, p.clock, actor=OPERATOR,
                                  progress=lambda phase, done, total: seen.append(phase))
    assert {"copy", "encrypt"} <= set(seen)
    assert taken.path.parent == p.settings.data_dir / "backups" / "us"
    assert taken.path.name == "20261129T120000Z.sfbak" and taken.path.stat().st_mode & 0o077 == 0
    raw = taken.path.read_bytes()
    assert canary.encode() not in raw and b"SQLite format 3" not in raw
    header = fmt.read_header(io.BytesIO(raw))[0]
    assert (header.region, header.source, header.plaintext_bytes) == ("us", "sqlite",
                                                                       taken.plaintext_bytes)
    assert header.chunks > 3  # 4 KiB chunks: the chunk tests below have chunks to move
    plain = _plaintext(p, taken.path)
    assert hashlib.sha256(plain).hexdigest() == header.sha256
    assert canary.encode() not in plain  # sealed inside the database too (S6)
    # Only the cell database: no key-store table, no tombstone log.
    copy = tmp_path / "copy.db"
    copy.write_bytes(plain)
    names = {r[0] for r in sqlite3.connect(copy).execute("SELECT name FROM sqlite_master")}
    assert "workflows" in names and not names & {"account_keysets", "tombstones"}
    assert _records(p, Action.BACKUP_TAKEN)[-1]["target"] == f"backup:{taken.path.name}"

    # Changes after the backup go away with the restore.
    p.clock.move(hours=1)
    workflows.delete_workflow(p.cells, p.clock, who, flow_id)
    authentications.delete_authentication(p.cells, p.clock, who, auth_id)
    backups.verify_backup(p.settings, taken.path)
    result = backups.restore_backup(p.settings, cell, p.clock, taken.path, actor=OPERATOR)
    assert result.shredded_accounts == [] and result.region == "us"
    assert _document(p, who, flow_id)["steps"][0]["input"]["expression"] == f"'{canary}'"
    assert _secret(p, auth_id) == {"key": canary}
    with cell.read() as conn:
        last = json.loads(list(iter_records(conn))[-1].record)
    assert last["action"] == Action.BACKUP_RESTORED and last["actor"]["kind"] == "operator"
    assert not [f for f in p.settings.data_dir.iterdir() if f.name.startswith(".")]


def test_a_restore_never_brings_shredded_data_back(platform: Platform) -> None:
    p, cell = platform, platform.cells["us"]
    canary = f"canary-{uuid.uuid4().hex}"
    who, flow_id, auth_id = _account(p, canary)
    taken = backups.create_backup(p.settings, cell, p.clock, actor=OPERATOR)
    account_deletion.delete_account(p.cells, p.clock, region="us", account_id=who.account_id)
    tombstones = default_tombstone_log(p.settings.data_dir, "us")
    before = tombstones.read_bytes()
    assert who.account_id.encode() in before

    result = backups.restore_backup(p.settings, cell, p.clock, taken.path, actor=OPERATOR)
    assert result.shredded_accounts == [who.account_id]
    with cell.read() as conn:  # the rows are back ...
        assert conn.execute(select(accounts_table.c.id)).scalars().all() == [who.account_id]
    with pytest.raises(DataDestroyed):  # ... but none of their data
        _document(p, who, flow_id)
    with pytest.raises(DataDestroyed):
        _secret(p, auth_id)
    assert tombstones.read_bytes() == before  # never backed up, never overwritten
    assert cell.keystore.is_shredded(who.account_id)
    p.clock.move(hours=1)
    after = backups.create_backup(p.settings, cell, p.clock, actor=OPERATOR)
    assert before.strip() not in _plaintext(p, after.path)  # the log is in no backup


def _chunk_span(raw: bytes, index: int) -> tuple[int, int]:
    header = fmt.read_header(io.BytesIO(raw))[0]
    start = len(raw) - header.body_bytes()
    size = header.chunk_bytes + fmt.TAG_BYTES
    return start + index * size, start + (index + 1) * size


def _flip(raw: bytes) -> bytes:
    at = _chunk_span(raw, 1)[0] + 100
    return raw[:at] + bytes([raw[at] ^ 1]) + raw[at + 1:]


def _swap(raw: bytes) -> bytes:
    (a0, a1), (b0, b1) = _chunk_span(raw, 0), _chunk_span(raw, 1)
    return raw[:a0] + raw[b0:b1] + raw[a0:a1] + raw[b1:]


def _drop_last_chunks(raw: bytes) -> bytes:
    """A truncation at a chunk boundary: what remains is whole chunks, the last one missing."""
    return raw[:_chunk_span(raw, 2)[1]]


def _header_edit(raw: bytes) -> bytes:
    return raw.replace(b'"source":"sqlite"', b'"source":"sqlitf"', 1)


@pytest.mark.parametrize(("damage", "error", "words"), [
    (_flip, fmt.BackupCorrupt, "chunk 2 of"),
    (_swap, fmt.BackupCorrupt, "chunk 1 of"),
    (lambda raw: raw[:-1000], fmt.BackupTruncated, "truncated"),
    (_drop_last_chunks, fmt.BackupTruncated, "truncated"),
    (lambda raw: raw + b"\0" * 16, fmt.BackupCorrupt, "follow the last chunk"),
    (_header_edit, fmt.BackupCorrupt, "chunk 1 of"),
    (lambda raw: raw[:20], fmt.BackupTruncated, "header"),
    (lambda raw: b"PK\x03\x04" + raw, fmt.BackupCorrupt, "not a sealflow backup"),
], ids=["flipped-byte", "swapped-chunks", "truncated", "truncated-at-chunk", "appended",
        "header-edited", "header-cut", "not-a-backup"])
def test_a_damaged_backup_is_refused_and_the_database_untouched(
        platform: Platform, tmp_path: Path, damage, error, words) -> None:
    p, cell = platform, platform.cells["us"]
    who, flow_id, _ = _account(p, "canary-damaged")
    taken = backups.create_backup(p.settings, cell, p.clock, actor=OPERATOR)
    workflows.delete_workflow(p.cells, p.clock, who, flow_id)  # the state a restore would undo
    bad = tmp_path / "bad.sfbak"
    bad.write_bytes(damage(taken.path.read_bytes()))
    state = _db_state(p)
    with pytest.raises(error, match=words):
        backups.verify_backup(p.settings, bad)
    with pytest.raises(error, match=words):
        backups.restore_backup(p.settings, cell, p.clock, bad, actor=OPERATOR)
    assert _db_state(p) == state
    assert not [f for f in p.settings.data_dir.iterdir() if f.name.startswith(".")]


def test_a_backup_of_another_region_or_key_is_refused(platform: Platform) -> None:
    p = platform
    _account(p, "canary-region")
    taken = backups.create_backup(p.settings, p.cells["us"], p.clock, actor=OPERATOR)
    eu_state = _db_state(p, "eu")
    with pytest.raises(fmt.WrongRegion, match="region 'us', not 'eu'"):
        backups.restore_backup(p.settings, p.cells["eu"], p.clock, taken.path, actor=OPERATOR)
    assert _db_state(p, "eu") == eu_state

    key_file = p.settings.backup_key_file("us")
    key_file.unlink()
    load_or_create_secret(key_file, 32)  # a different backup key
    us_state = _db_state(p)
    with pytest.raises(fmt.WrongBackupKey, match="another backup key"):
        backups.verify_backup(p.settings, taken.path)
    with pytest.raises(fmt.WrongBackupKey, match="another backup key"):
        backups.restore_backup(p.settings, p.cells["us"], p.clock, taken.path, actor=OPERATOR)
    assert _db_state(p) == us_state
    key_file.unlink()
    with pytest.raises(fmt.WrongBackupKey, match="no backup key"):
        backups.verify_backup(p.settings, taken.path)


def test_a_database_in_use_is_not_replaced(platform: Platform) -> None:
    p, cell = platform, platform.cells["us"]
    who, flow_id, _ = _account(p, "canary-in-use")
    taken = backups.create_backup(p.settings, cell, p.clock, actor=OPERATOR)
    workflows.delete_workflow(p.cells, p.clock, who, flow_id)
    other = sqlite3.connect(p.settings.data_dir / "us.db")  # another process's connection
    try:
        other.execute("SELECT count(*) FROM workflows").fetchone()
        with pytest.raises(DatabaseInUse, match="in use"):
            backups.restore_backup(p.settings, cell, p.clock, taken.path, actor=OPERATOR)
        with pytest.raises(NotFound):
            workflows.get(p.cells, who, flow_id)  # still the live state
    finally:
        other.close()
    backups.restore_backup(p.settings, cell, p.clock, taken.path, actor=OPERATOR)
    assert workflows.get(p.cells, who, flow_id).id == flow_id


def test_daily_backups_are_kept_at_most_14_days(platform: Platform) -> None:
    p, cell = platform, platform.cells["us"]
    _account(p, "canary-schedule")
    start = p.clock.now()
    # The job bootstrap wires into housekeeping (run each minute by the scheduler).
    (wired,) = [j for j in p.ticker.housekeeping if isinstance(j, backups.BackupJob)]

    def job(cell: Cell) -> int:  # the wired job runs in a thread: wait for it
        assert wired(cell) == 1
        wired.join(timeout=60)
        return len(backups.list_backups(p.settings, "us"))

    assert job(cell) == 1  # none yet: one now
    assert job(cell) == 1
    p.clock.move(hours=23, minutes=59)
    assert job(cell) == 1  # the newest is not a day old
    p.clock.move(minutes=1)
    assert job(cell) == 2
    for _ in range(16):
        p.clock.move(days=1)
        job(cell)
    now = p.clock.now()
    kept = backups.list_backups(p.settings, "us")
    assert min(b.created_at for b in kept) >= now - timedelta(days=14)
    assert min(b.created_at for b in kept) == now - timedelta(days=14)
    assert max(b.created_at for b in kept) == now
    assert start not in {b.created_at for b in kept}
    deleted = _records(p, Action.BACKUP_DELETED)
    assert len(deleted) == 18 - len(kept) and deleted[0]["target"] == "backup:20261129T120000Z.sfbak"
    assert deleted[0]["actor"]["kind"] == "system"


def test_retention_can_be_shorter_never_longer(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="keep_days"):
        Settings(data_dir=tmp_path, backups={"keep_days": 15})
    settings = Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()},
                        backups=BackupSettings(keep_days=2, chunk_bytes=4096))
    p = build_platform(settings, clock=ManualClock())
    try:
        cell = p.cells["us"]
        for _ in range(5):
            backups.scheduled_backups(cell, settings=settings, clock=p.clock)
            p.clock.move(days=1)
        backups.scheduled_backups(cell, settings=settings, clock=p.clock)
        ages = [p.clock.now() - b.created_at for b in backups.list_backups(settings, "us")]
        assert ages == [timedelta(days=2), timedelta(days=1), timedelta(0)]
    finally:
        p.cells.dispose()


def test_one_backup_at_a_time_per_region(platform: Platform) -> None:
    import fcntl
    import os

    p, cell = platform, platform.cells["us"]
    folder = p.settings.backup_dir("us")
    folder.mkdir(parents=True)
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # as another process taking one
        with pytest.raises(backups.BackupBusy, match="another backup"):
            backups.scheduled_backups(cell, settings=p.settings, clock=p.clock)
    finally:
        os.close(fd)
    assert backups.scheduled_backups(cell, settings=p.settings, clock=p.clock) == 1


def test_postgres_arguments_keep_the_password_off_the_command_line(tmp_path: Path) -> None:
    """The PostgreSQL path's argument handling (a real PostgreSQL comes with the scale-out
    issue's tests): the password goes to PGPASSWORD, a missing or failing tool is one line."""
    from sealflow.services import backup_sources as sources

    url = "postgresql+psycopg://sealflow:pa%40ss@db.internal:5433/cell_us?sslmode=require"
    conninfo, env = sources.pg_conninfo(url)
    assert conninfo == "postgresql://sealflow@db.internal:5433/cell_us?sslmode=require"
    assert env == {"PGPASSWORD": "pa@ss"}
    assert sources.source_kind(url) == sources.source_kind("postgresql://x@h/d") == "postgresql"
    with pytest.raises(sources.BackupSourceError, match="only sqlite and postgresql"):
        sources.source_kind("mysql://x@h/d")
    with pytest.raises(sources.BackupSourceError, match=r"pg_dump is not installed"):
        sources.copy_database(url, tmp_path / "a.dump", pg_dump=str(tmp_path / "no-pg_dump"))
    # The real pg_dump against nothing listening: its own last line, no password in it.
    refused = "postgresql://sealflow:secret-pw@127.0.0.1:1/none"
    with pytest.raises(sources.BackupSourceError, match=r"pg_dump failed \(exit 1\)") as err:
        sources.copy_database(refused, tmp_path / "b.dump", pg_dump="pg_dump")
    assert "secret-pw" not in err.value.message
