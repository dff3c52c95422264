"""The key store on a real SQLite file: its own migrations and version table, compare-and-swap
writes, resumable rewrap batches, shredding with tombstones and the restore hook."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect

from sealflow.db.engine import make_engine
from sealflow.vault.errors import AccountShredded
from sealflow.vault.keystore import (
    VERSION_TABLE,
    KeyStore,
    Tombstone,
    WrappedKeyset,
    account_keysets,
    default_keystore_url,
    keystore_alembic_config,
    keystore_revision,
    metadata,
    upgrade_keystore,
)

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.t = T0
        self.mono = 0.0

    def now(self) -> datetime:
        return self.t

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never slept here
        self.mono += seconds


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = make_engine(default_keystore_url(tmp_path, "us"))
    yield e
    e.dispose()


@pytest.fixture
def store(engine: Engine) -> KeyStore:
    upgrade_keystore(engine)
    return KeyStore(engine, Clock())


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "version_table": VERSION_TABLE,
            },
        )
        return list(compare_metadata(ctx, metadata))


def test_default_url_is_a_file_of_its_own_per_region(tmp_path: Path) -> None:
    assert default_keystore_url(tmp_path, "eu") == f"sqlite:///{tmp_path.resolve()}/keys/eu.keys.db"


def test_migrations_match_the_metadata_with_their_own_version_table(engine: Engine) -> None:
    assert keystore_revision(engine) is None
    upgrade_keystore(engine)
    head = ScriptDirectory.from_config(keystore_alembic_config(engine)).get_current_head()
    assert keystore_revision(engine) == head == "keys_0001"
    assert set(inspect(engine).get_table_names()) == {VERSION_TABLE, *metadata.tables}
    assert "alembic_version" not in inspect(engine).get_table_names()
    assert differences(engine) == []
    upgrade_keystore(engine)  # again: a no-op
    assert differences(engine) == []
    command.downgrade(keystore_alembic_config(engine), "base")
    assert set(inspect(engine).get_table_names()) == {VERSION_TABLE}
    upgrade_keystore(engine)
    assert differences(engine) == []


def test_insert_get_and_the_first_writer_wins(store: KeyStore) -> None:
    assert store.get("a1") is None
    first = store.insert("a1", b"blob-1", 1)
    assert first == WrappedKeyset("a1", b"blob-1", 1, T0, None)
    assert store.insert("a1", b"blob-2", 1) == first
    assert store.get("a1") == first


def test_replace_is_a_compare_and_swap(store: KeyStore) -> None:
    store.insert("a1", b"blob-1", 1)
    store._clock.t = T0 + timedelta(days=1)  # type: ignore[attr-defined]
    assert store.replace("a1", expected=b"blob-1", blob=b"blob-2", kek_version=2, rotated=True)
    assert not store.replace("a1", expected=b"blob-1", blob=b"blob-3", kek_version=2, rotated=True)
    got = store.get("a1")
    assert got is not None and (got.blob, got.kek_version) == (b"blob-2", 2)
    assert got.rotated_at == T0 + timedelta(days=1)
    assert store.replace("a1", expected=b"blob-2", blob=b"blob-4", kek_version=3, rotated=False)
    got = store.get("a1")
    assert got is not None and got.rotated_at == T0 + timedelta(days=1)


def test_rewrap_runs_in_resumable_batches(store: KeyStore) -> None:
    for i in range(5):
        store.insert(f"a{i}", f"blob-{i}".encode(), 1)
    store.insert("new", b"blob-new", 2)
    seen: list[str] = []

    def rewrap(w: WrappedKeyset) -> bytes:
        seen.append(w.account_id)
        return w.blob + b"@2"

    first = store.rewrap(rewrap, to_version=2, batch_size=2)
    assert (first.rewrapped, first.remaining, first.done) == (2, 3, False)
    rest = store.rewrap(rewrap, to_version=2, batch_size=10)
    assert (rest.rewrapped, rest.remaining, rest.done) == (3, 0, True)
    assert seen == ["a0", "a1", "a2", "a3", "a4"]
    assert store.kek_version_counts() == {2: 6}
    got = store.get("a3")
    assert got is not None and got.blob == b"blob-3@2"
    assert store.rewrap(rewrap, to_version=2).rewrapped == 0
    with pytest.raises(ValueError):
        store.rewrap(rewrap, to_version=2, batch_size=0)


def test_a_row_changed_during_rewrap_is_left_for_the_next_batch(store: KeyStore) -> None:
    store.insert("a1", b"blob-1", 1)

    def racing(w: WrappedKeyset) -> bytes:
        store.replace("a1", expected=w.blob, blob=b"rotated", kek_version=1, rotated=True)
        return b"stale"

    progress = store.rewrap(racing, to_version=2)
    assert (progress.rewrapped, progress.remaining) == (0, 1)
    got = store.get("a1")
    assert got is not None and got.blob == b"rotated"


def test_shred_deletes_the_keyset_and_leaves_a_tombstone(store: KeyStore) -> None:
    store.insert("a1", b"blob-1", 1)
    store.insert("a2", b"blob-2", 1)
    assert not store.is_shredded("a1")
    assert store.shred("a1") is True
    assert store.shred("a1") is False  # idempotent
    assert store.shred("never-had-keys") is True
    assert store.is_shredded("a1")
    assert store.tombstones() == [Tombstone("a1", T0), Tombstone("never-had-keys", T0)]
    assert store.shredded_count() == 2
    assert store.kek_version_counts() == {1: 1}
    for call in (
        lambda: store.get("a1"),
        lambda: store.insert("a1", b"again", 1),
        lambda: store.replace("a1", expected=b"blob-1", blob=b"x", kek_version=1, rotated=True),
    ):
        with pytest.raises(AccountShredded) as err:
            call()
        assert err.value.code == "account_shredded" and err.value.retryable is False


def test_a_keyset_row_restored_from_an_old_backup_is_still_refused(
    store: KeyStore, engine: Engine
) -> None:
    store.insert("a1", b"blob-1", 1)
    old_row = store.get("a1")
    assert old_row is not None
    store.shred("a1")
    with engine.begin() as conn:  # what restoring an older key-store file brings back
        conn.execute(
            insert(account_keysets).values(
                account_id="a1", keyset=old_row.blob, kek_version=1, created_at=T0
            )
        )
    with pytest.raises(AccountShredded):
        store.get("a1")
    assert store.kek_version_counts() == {1: 1}
    # The restore hook drops it for good.
    assert store.apply_tombstones([]) == 1
    assert store.kek_version_counts() == {}


def test_apply_tombstones_carries_them_into_a_restored_store(
    store: KeyStore, tmp_path: Path
) -> None:
    store.insert("a1", b"blob-1", 1)
    store.insert("a2", b"blob-2", 1)
    live = make_engine(f"sqlite:///{tmp_path}/live.keys.db")
    try:
        upgrade_keystore(live)
        current = KeyStore(live, Clock())
        current.shred("a1")
        current.shred("a9")
        # `store` plays the restored older backup, which has no tombstones yet.
        assert store.apply_tombstones(current.tombstones()) == 1
        assert store.apply_tombstones(current.tombstones()) == 0
        assert store.is_shredded("a1") and store.is_shredded("a9")
        assert store.get("a2") is not None
    finally:
        live.dispose()
