"""Deleting an account in-process over real SQLite files (services.account_deletion): every
row goes after the keys, in batches, resumable after a crash with one exact record; queued
and running executions of the account end without crashing their worker. And the tombstone
log beside the key store (vault.tombstone_log): what keeps a restored older key store from
reviving a shredded account's keys."""

from __future__ import annotations

import asyncio
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from sealflow.bootstrap import Platform, build_platform, migrate_all
from sealflow.cli_ops import run_now
from sealflow.config import RegionSettings, Settings
from sealflow.connectors.base import Connector, Operation
from sealflow.connectors.registry import ConnectorRegistry
from sealflow.core.errors import NotFound
from sealflow.core.executions import Status
from sealflow.db import tables
from sealflow.db.engine import make_engine
from sealflow.db.sealed import DataDestroyed, open_, seal
from sealflow.engine.records import lease_deadline
from sealflow.queue.embedded import new_owner
from sealflow.services import account_deletion, accounts, executions, workflows
from sealflow.services.account_deletion import TABLES, delete_account
from sealflow.services.accounts import Caller
from sealflow.vault.errors import AccountShredded
from sealflow.vault.keystore import KeyStore, account_keysets, upgrade_keystore
from sealflow.vault.tombstone_log import Tombstone, TombstoneLog, default_tombstone_log

TWO_STEPS = {
    "name": "two steps",
    "trigger": {"type": "manual"},
    "steps": [
        {"name": "first", "connector": "transform", "input": {"expression": "$.trigger.body"}},
        {"name": "second", "connector": "transform", "input": {"expression": "$.steps.first"}},
    ],
}
HOOK = {"name": "hook", "trigger": {"type": "webhook"},
        "steps": [{"name": "echo", "connector": "transform",
                   "input": {"expression": "$.trigger.body"}}]}
SCHEDULE = {"name": "hourly", "trigger": {"type": "schedule", "cron": "0 * * * *"},
            "steps": [{"name": "noop", "connector": "transform", "input": {"expression": "1"}}]}
NAP = {"name": "nap", "trigger": {"type": "manual"},
       "steps": [{"name": "nap", "connector": "napper", "input": {}}]}


async def _nap(input: Any, ctx: Any) -> dict[str, Any]:
    await asyncio.sleep(0.3)
    return {"slept": True}


def napper() -> Connector:
    return Connector(name="napper", description="sleeps a little", operations={
        "nap": Operation(name="nap", description="sleep", input_schema={"type": "object"},
                         output_schema={"type": "object"}, handler=_nap)})


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()})
    registry = ConnectorRegistry.discover()
    registry.register(napper())
    p = build_platform(settings, registry=registry)
    yield p
    p.cells.dispose()


def _account(p: Platform, name: str) -> Caller:
    account, _ = accounts.create_account(p.cells, p.clock, name=name, region="us")
    return Caller(region="us", account_id=account.id, token_id="t")


def _populate(p: Platform, who: Caller, runs: int = 3) -> dict[str, int]:
    """Rows in every table of the cell; returns how many the account has per table."""
    accounts.issue_token(p.cells, p.clock, region="us", account_id=who.account_id, name="two")
    flow = workflows.create(p.cells, p.clock, p.registry, p.limits, who, TWO_STEPS).workflow
    workflows.create(p.cells, p.clock, p.registry, p.limits, who, HOOK)
    workflows.create(p.cells, p.clock, p.registry, p.limits, who, SCHEDULE)
    for i in range(runs):
        assert asyncio.run(run_now(p, flow.id, {"n": i}))["status"] == "succeeded"
    executions.start(p.cells, p.clock, who, flow.id, {"queued": True})
    cell = p.cells["us"]
    with cell.write() as conn:
        conn.execute(insert(tables.authentications).values(
            id=f"auth-{who.account_id[:31]}", account_id=who.account_id, name="api", type="api_key",
            shared=True, owner_id="t", status="active", revision=1,
            config=seal(cell.vault, who.account_id, "authentications", "a", "config", {}),
            secret=seal(cell.vault, who.account_id, "authentications", "a", "secret", "s3cr3t"),
            created_at=p.clock.now(), updated_at=p.clock.now()))
        conn.execute(insert(tables.oauth_states).values(
            state_hash=f"state-{who.account_id}", account_id=who.account_id,
            authentication_id=f"auth-{who.account_id[:31]}", expires_at=p.clock.now(),
            verifier=seal(cell.vault, who.account_id, "oauth_states", "s", "verifier", "v")))
    return _counts(p, who.account_id)


def _counts(p: Platform, account_id: str) -> dict[str, int]:
    with p.cells["us"].read() as conn:
        out = {}
        for name in TABLES:
            table = tables.metadata.tables[name]
            column = table.c.id if name == "accounts" else table.c.account_id
            out[name] = conn.execute(
                select(func.count()).select_from(table).where(column == account_id)
            ).scalar_one()
    return out


def test_every_table_with_account_rows_is_deleted() -> None:
    """A new table holding account data must join the deletion (D4), or this fails."""
    holding = {t.name for t in tables.metadata.sorted_tables if "account_id" in t.c}
    holding -= {"account_deletions"}  # the record of the deletion itself
    assert holding | {"accounts"} == set(TABLES)
    # Children before the rows they reference.
    order = {name: i for i, name in enumerate(TABLES)}
    for table in tables.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if table.name in order and fk.column.table.name in order:
                assert order[table.name] < order[fk.column.table.name], (table.name, fk)


def test_delete_shreds_removes_every_row_and_keeps_the_other_account(platform: Platform) -> None:
    p = platform
    victim, other = _account(p, "Victim Ltd"), _account(p, "Other Ltd")
    before = _populate(p, victim)
    kept = _populate(p, other, runs=1)
    assert before["step_runs"] == 6 and before["executions"] == 4 and before["workflows"] == 3
    saved = workflows.list_workflows(p.cells, victim, limit=10, offset=0)
    cached = next(w for w in saved if w.trigger_type == "manual")
    assert p.definitions.peek(p.cells["us"], cached.id, 1) is not None

    assert account_deletion.locate(p.cells, victim.account_id) == "us"
    record = delete_account(p.cells, p.clock, region="us", account_id=victim.account_id,
                            forget=p.definitions.forget_account, batch_size=2)

    assert record.removed == before and record.complete
    assert _counts(p, victim.account_id) == dict.fromkeys(TABLES, 0)
    assert _counts(p, other.account_id) == kept
    assert p.cells["us"].vault.is_shredded(victim.account_id)
    assert not p.cells["us"].vault.is_shredded(other.account_id)
    assert p.definitions.peek(p.cells["us"], cached.id, 1) is None
    assert workflows.count(p.cells, other) == 3
    with p.cells["us"].read() as conn:
        row = conn.execute(select(tables.account_deletions)).one()
    assert row.account_id == victim.account_id and "Victim" not in row.removed
    assert account_deletion.find_deletion(p.cells, "us", victim.account_id) == record
    assert account_deletion.locate(p.cells, victim.account_id) == "us"
    # Again: nothing left to do, the same record.
    assert delete_account(p.cells, p.clock, region="us", account_id=victim.account_id) == record


def test_an_interrupted_deletion_finishes_when_run_again(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = platform
    who = _account(p, "Crashy")
    before = _populate(p, who)
    # A crash right after the shred (before any record): the next run goes on from there.
    assert p.cells["us"].vault.shred(who.account_id)
    assert account_deletion.find_deletion(p.cells, "us", who.account_id) is None

    real = account_deletion._delete_rows
    batches = 0

    def crash_after_three(*args: Any) -> Iterator[dict[str, int]]:
        nonlocal batches
        for counts in real(*args):
            yield counts
            batches += 1
            if batches == 3:
                raise OSError("power cut")

    monkeypatch.setattr(account_deletion, "_delete_rows", crash_after_three)
    with pytest.raises(OSError):
        delete_account(p.cells, p.clock, region="us", account_id=who.account_id, batch_size=1)
    partial = account_deletion.find_deletion(p.cells, "us", who.account_id)
    assert partial is not None and not partial.complete and sum(partial.removed.values()) == 3
    # Meanwhile its data answers data_destroyed, not a 500.
    with pytest.raises(DataDestroyed):
        workflows.list_workflows(p.cells, who, limit=10, offset=0)

    monkeypatch.setattr(account_deletion, "_delete_rows", real)
    done = delete_account(p.cells, p.clock, region="us", account_id=who.account_id,
                          batch_size=1)
    assert done.complete and done.removed == before
    assert _counts(p, who.account_id) == dict.fromkeys(TABLES, 0)
    with p.cells["us"].read() as conn:
        assert conn.execute(select(func.count()).select_from(tables.account_deletions)
                            ).scalar_one() == 1


def test_an_unknown_account_is_not_found_and_nothing_is_shredded(platform: Platform) -> None:
    with pytest.raises(NotFound):
        delete_account(platform.cells, platform.clock, region="us", account_id="nobody")
    with pytest.raises(NotFound):
        account_deletion.locate(platform.cells, "nobody")
    assert not platform.cells["us"].vault.is_shredded("nobody")
    with pytest.raises(ValueError):
        delete_account(platform.cells, platform.clock, region="us", account_id="x",
                       batch_size=0)


def test_queued_and_running_executions_end_without_crashing_their_worker(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    p = platform
    who = _account(p, "Busy")
    napping = workflows.create(p.cells, p.clock, p.registry, p.limits, who, NAP).workflow
    cell = p.cells["us"]

    def claimed() -> tuple[str, str]:
        owner = new_owner()
        with cell.write() as conn:
            wf = executions.workflow_for_run(conn, who.account_id, napping.id)
            created = executions.insert_execution(
                conn, p.clock, cell.vault, region="us", account_id=who.account_id,
                workflow_id=napping.id, version=wf.current_version, trigger_type="manual",
                payload={"body": None}, lease_owner=owner,
                lease_expires_at=lease_deadline(p.clock.now(), 30))
        return created.id, owner

    queued, running = claimed(), claimed()

    async def main() -> tuple[Any, Any]:
        # One runs (its step naps) while the account is deleted; the other was queued and is
        # taken up after the shred, before its row is deleted.
        task = asyncio.ensure_future(p.runner.run("us", running[0], running[1]))
        await asyncio.sleep(0.1)
        cell.vault.shred(who.account_id)
        late = await p.runner.run("us", queued[0], queued[1])
        with cell.read() as conn:
            status = conn.execute(select(tables.executions.c.status).where(
                tables.executions.c.id == queued[0])).scalar_one()
        delete_account(p.cells, p.clock, region="us", account_id=who.account_id)
        return (late, status), await task

    with caplog.at_level(logging.ERROR):
        (late, status), gone = asyncio.run(main())
    assert late == Status.FAILED and status == "failed"
    assert gone is None  # its row went while it napped: nothing to write to
    assert _counts(p, who.account_id) == dict.fromkeys(TABLES, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- the tombstone log -------------------------------------------------------------------------
T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def now(self) -> datetime:
        return T0

    def monotonic(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never slept here
        pass


def test_the_log_appends_durably_once_and_reads_back(tmp_path: Path) -> None:
    path = default_tombstone_log(tmp_path, "eu")
    assert path == (tmp_path / "keys" / "eu.tombstones").resolve()
    log = TombstoneLog(path)
    assert log.read() == [] and "a1" not in log
    assert log.append(Tombstone("a1", T0))
    assert not log.append(Tombstone("a1", T0))  # already there
    assert log.append(Tombstone("a2", T0))
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == f"a1 {T0.isoformat()}\na2 {T0.isoformat()}\n"
    assert "a1" in log and "a2" in log and "a3" not in log
    # Another process's append is seen (the file changed).
    TombstoneLog(path).append(Tombstone("a3", T0))
    assert "a3" in log
    with pytest.raises(ValueError):
        log.append(Tombstone("has space", T0))
    with pytest.raises(ValueError):
        log.append(Tombstone("", T0))


def test_a_torn_line_is_skipped_and_the_next_append_starts_a_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "us.tombstones"
    path.write_bytes(f"a1 {T0.isoformat()}\na1 2030-01-01T00:00:00+00:00\na2 20".encode())
    log = TombstoneLog(path)
    assert log.read() == [Tombstone("a1", T0)]  # the first line of an account wins
    assert log.append(Tombstone("a2", T0))
    with caplog.at_level(logging.WARNING, logger="sealflow.vault"):
        assert [s.account_id for s in log.read()] == ["a1", "a2"]
    assert "line 3 unreadable" in caplog.text


def _keystore(path: Path, log: TombstoneLog | None) -> tuple[KeyStore, Any]:
    engine = make_engine(f"sqlite:///{path}")
    upgrade_keystore(engine)
    return KeyStore(engine, Clock(), log), engine


def test_a_restored_older_key_store_does_not_revive_a_shredded_keyset(tmp_path: Path) -> None:
    db = tmp_path / "keys" / "us.keys.db"
    log = TombstoneLog(tmp_path / "keys" / "us.tombstones")
    store, engine = _keystore(db, log)
    blob = b"WRAPPED-KEYSET-" * 8
    store.insert("a1", blob, 1)
    store.insert("a2", b"other", 1)
    backup = tmp_path / "backup.keys.db"
    with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
        src.backup(dst)
    assert store.shred("a1")
    assert not store.shred("a1")
    engine.dispose()
    # The wrapped keyset is gone from the file: zeroed, and no copy left in a WAL.
    assert blob not in db.read_bytes()
    assert not Path(f"{db}-wal").exists() or blob not in Path(f"{db}-wal").read_bytes()

    shutil.copy(backup, db)  # an older key store comes back, keyset row and all
    store, engine = _keystore(db, log)
    try:
        assert store.tombstones() == []
        with pytest.raises(AccountShredded):  # refused before any start-up sync
            store.get("a1")
        with pytest.raises(AccountShredded):
            store.insert("a1", b"new", 1)
        assert store.is_shredded("a1") and not store.is_shredded("a2")
        assert store.sync_tombstone_log() == 1
        assert store.sync_tombstone_log() == 0
        assert [t.account_id for t in store.tombstones()] == ["a1"]
        assert store.kek_version_counts() == {1: 1}
        assert store.get("a2") is not None
    finally:
        engine.dispose()
    assert blob not in db.read_bytes()


def test_sync_writes_tombstones_the_log_lacks(tmp_path: Path) -> None:
    store, engine = _keystore(tmp_path / "k.db", None)
    try:
        store.insert("a1", b"x", 1)
        assert store.shred("a1")
        assert store.sync_tombstone_log() == 0  # no log: nothing to do
        log = TombstoneLog(tmp_path / "k.tombstones")
        with_log = KeyStore(engine, Clock(), log)
        assert with_log.sync_tombstone_log() == 0
        assert log.read() == [Tombstone("a1", T0)]
    finally:
        engine.dispose()


def test_start_up_drops_a_revived_keyset(
    platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    p = platform
    who = _account(p, "Revenant")
    workflows.create(p.cells, p.clock, p.registry, p.limits, who, HOOK)
    cell = p.cells["us"]
    stored = cell.keystore.get(who.account_id)
    assert stored is not None
    delete_account(p.cells, p.clock, region="us", account_id=who.account_id)
    with cell.keystore_engine.begin() as conn:  # what an older key-store restore brings back
        conn.execute(insert(account_keysets).values(
            account_id=who.account_id, keyset=stored.blob, kek_version=stored.kek_version,
            created_at=stored.created_at))
        conn.exec_driver_sql("DELETE FROM tombstones")
    with caplog.at_level(logging.WARNING, logger="sealflow"):
        migrate_all(p.cells)
    assert "dropped 1 keysets of shredded accounts" in caplog.text
    assert cell.keystore.kek_version_counts() == {}
    with pytest.raises(AccountShredded):
        cell.keystore.get(who.account_id)
    with pytest.raises(DataDestroyed):
        open_(cell.vault, who.account_id, "workflows", "w", "webhook_token", "AQ")
    assert default_tombstone_log(p.settings.data_dir, "us").is_file()
