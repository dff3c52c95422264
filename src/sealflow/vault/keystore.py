"""The key store of a region: the wrapped account keysets and the tombstones of shredded
accounts, in a database of its own, apart from the cell data (DESIGN: key material and the
list of shredded accounts live apart from the data they protect, with their own backup), so
restoring a data backup cannot revive a shredded key.

By default a SQLite file per region, `<data_dir>/keys/<region>.keys.db`, with its own Alembic
migrations (`vault/migrations`, version table `alembic_version_keys`, so it may also share a
PostgreSQL database with the cell if an operator chooses).

This module stores bytes; it never decrypts. Every read checks the tombstones first, in the
same transaction, so a keyset row that reappears (an older key-store backup restored) is
still refused. `apply_tombstones` is the hook a restore uses to carry the current tombstones
into a restored key store and drop the keysets they name.

The tombstones are also appended to a log file beside the key store (`TombstoneLog`,
`<data_dir>/keys/<region>.tombstones`), which is never part of a key-store backup: a key
store restored from before a shred lacks its tombstone, the log still has it. Reads refuse
what the log names, and `sync_tombstone_log` (run at every start) drops the revived keysets.
Writes run with SQLite's secure_delete and a shred checkpoints the WAL, so a deleted wrapped
keyset does not linger in free pages or in the WAL file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from sealflow.clock import Clock
from sealflow.db.migrate import alembic_config, upgrade
from sealflow.db.tables import DateTime
from sealflow.vault.errors import AccountShredded
from sealflow.vault.tombstone_log import Tombstone as Tombstone  # re-exported
from sealflow.vault.tombstone_log import TombstoneLog

MIGRATIONS = Path(__file__).parent / "migrations"
VERSION_TABLE = "alembic_version_keys"

metadata = MetaData()

account_keysets = Table(
    "account_keysets",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("keyset", LargeBinary, nullable=False),  # Tink encrypted keyset (wrapped by KEK)
    Column("kek_version", Integer, nullable=False),
    Column("created_at", DateTime(), nullable=False),
    Column("rotated_at", DateTime(), nullable=True),
    Index("ix_account_keysets_kek_version", "kek_version"),
)

# Nothing personal: the account id and the time, so every later read can refuse it.
tombstones = Table(
    "tombstones",
    metadata,
    Column("account_id", String(64), primary_key=True),
    Column("shredded_at", DateTime(), nullable=False),
)


def default_keystore_url(data_dir: Path, region: str) -> str:
    return f"sqlite:///{(Path(data_dir) / 'keys' / f'{region}.keys.db').resolve()}"


def keystore_alembic_config(engine: Engine) -> Config:
    return alembic_config(engine, MIGRATIONS)


def upgrade_keystore(engine: Engine, revision: str = "head") -> None:
    upgrade(engine, revision, MIGRATIONS)


def keystore_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


@dataclass(frozen=True)
class WrappedKeyset:
    account_id: str
    blob: bytes
    kek_version: int
    created_at: datetime
    rotated_at: datetime | None


@dataclass(frozen=True)
class RewrapProgress:
    """One batch of a KEK rewrap: how many rows it moved and how many are still behind."""

    rewrapped: int
    remaining: int

    @property
    def done(self) -> bool:
        return self.remaining == 0


class KeyStore:
    """Wrapped keysets and tombstones of one region (bytes only; the Vault does the crypto)."""

    def __init__(
        self, engine: Engine, clock: Clock, tombstone_log: TombstoneLog | None = None
    ) -> None:
        self.engine = engine
        self._clock = clock
        self._log = tombstone_log
        self._sqlite = engine.dialect.name == "sqlite"

    # -- transactions ----------------------------------------------------------------------
    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn = conn.execution_options(readonly=True)
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            if self._sqlite:  # zero what a write frees: no old keyset left in free pages
                conn.exec_driver_sql("PRAGMA secure_delete=ON")
            yield conn

    def _checkpoint(self) -> None:
        """Moves the WAL into the file and truncates it, so the pages a shred zeroed replace
        the old ones now, not at some later checkpoint (SQLite; best effort while readers
        hold snapshots, the next checkpoint finishes it)."""
        if not self._sqlite:
            return
        raw = self.engine.raw_connection()  # outside any transaction (the driver autocommits)
        try:
            cursor = raw.cursor()
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            cursor.close()
        finally:
            raw.close()

    def _refuse_shredded(self, conn: Connection, account_id: str) -> None:
        if self._log is not None and account_id in self._log:
            raise AccountShredded(account_id)
        found = conn.execute(
            select(tombstones.c.account_id).where(tombstones.c.account_id == account_id)
        ).first()
        if found is not None:
            raise AccountShredded(account_id)

    # -- keysets ---------------------------------------------------------------------------
    def get(self, account_id: str) -> WrappedKeyset | None:
        """The account's wrapped keyset, None if it has none; AccountShredded if tombstoned
        (whatever the keysets table holds)."""
        with self._read() as conn:
            self._refuse_shredded(conn, account_id)
            row = conn.execute(
                select(account_keysets).where(account_keysets.c.account_id == account_id)
            ).first()
        return None if row is None else _wrapped(row)

    def insert(self, account_id: str, blob: bytes, kek_version: int) -> WrappedKeyset:
        """Stores a new account's keyset. If another process stored one first, that one wins
        and is returned (callers use what this returns)."""
        try:
            with self._write() as conn:
                self._refuse_shredded(conn, account_id)
                conn.execute(
                    insert(account_keysets).values(
                        account_id=account_id,
                        keyset=blob,
                        kek_version=kek_version,
                        created_at=self._clock.now(),
                        rotated_at=None,
                    )
                )
        except IntegrityError:
            pass
        stored = self.get(account_id)
        assert stored is not None  # inserted above or by the winner; shred raises in get()
        return stored

    def replace(
        self, account_id: str, *, expected: bytes, blob: bytes, kek_version: int, rotated: bool
    ) -> bool:
        """Compare-and-swap: replaces the keyset only if it is still `expected`. False when
        another writer changed it first (re-read and try again); AccountShredded if shredded."""
        values: dict[str, object] = {"keyset": blob, "kek_version": kek_version}
        if rotated:
            values["rotated_at"] = self._clock.now()
        with self._write() as conn:
            self._refuse_shredded(conn, account_id)
            result = conn.execute(
                update(account_keysets)
                .where(account_keysets.c.account_id == account_id)
                .where(account_keysets.c.keyset == expected)
                .values(**values)
            )
        return bool(result.rowcount == 1)

    def rewrap(
        self,
        rewrap: Callable[[WrappedKeyset], bytes],
        *,
        to_version: int,
        batch_size: int = 100,
    ) -> RewrapProgress:
        """One resumable batch of a KEK rotation: rewraps up to `batch_size` keysets whose
        kek_version is below `to_version` (each row its own compare-and-swap, so it runs
        online beside data-key rotations) and says how many remain. Call until done."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        with self._read() as conn:
            rows = conn.execute(
                select(account_keysets)
                .where(account_keysets.c.kek_version < to_version)
                .order_by(account_keysets.c.account_id)
                .limit(batch_size)
            ).all()
        done = 0
        for row in rows:
            old = _wrapped(row)
            new_blob = rewrap(old)
            with self._write() as conn:
                result = conn.execute(
                    update(account_keysets)
                    .where(account_keysets.c.account_id == old.account_id)
                    .where(account_keysets.c.keyset == old.blob)
                    .values(keyset=new_blob, kek_version=to_version)
                )
            done += int(result.rowcount)
        with self._read() as conn:
            remaining = conn.execute(
                select(func.count())
                .select_from(account_keysets)
                .where(account_keysets.c.kek_version < to_version)
            ).scalar_one()
        return RewrapProgress(rewrapped=done, remaining=int(remaining))

    def kek_version_counts(self) -> dict[int, int]:
        """How many account keysets are wrapped under each KEK version."""
        with self._read() as conn:
            rows = conn.execute(
                select(account_keysets.c.kek_version, func.count())
                .group_by(account_keysets.c.kek_version)
                .order_by(account_keysets.c.kek_version)
            ).all()
        return {int(version): int(count) for version, count in rows}

    # -- shredding -------------------------------------------------------------------------
    def shred(self, account_id: str) -> bool:
        """Deletes the account's keyset and records its tombstone in one transaction. True the
        first time, False if it was already shredded (idempotent). The tombstone log gets it
        first: a crash in between leaves the log naming an account whose keyset the next
        start (sync_tombstone_log) deletes, never a keyset without any record of its end."""
        if self._log is not None:
            self._log.append(Tombstone(account_id, self._clock.now()))
        first = self._shred(account_id)
        self._checkpoint()
        return first

    def _shred(self, account_id: str) -> bool:
        with self._write() as conn:
            conn.execute(delete(account_keysets).where(account_keysets.c.account_id == account_id))
            exists = conn.execute(
                select(tombstones.c.account_id).where(tombstones.c.account_id == account_id)
            ).first()
            if exists is not None:
                return False
            conn.execute(
                insert(tombstones).values(account_id=account_id, shredded_at=self._clock.now())
            )
        return True

    def is_shredded(self, account_id: str) -> bool:
        try:
            with self._read() as conn:
                self._refuse_shredded(conn, account_id)
        except AccountShredded:
            return True
        return False

    def tombstones(self) -> list[Tombstone]:
        with self._read() as conn:
            rows = conn.execute(select(tombstones).order_by(tombstones.c.account_id)).all()
        return [Tombstone(str(r.account_id), r.shredded_at) for r in rows]

    def shredded_count(self) -> int:
        with self._read() as conn:
            count = conn.execute(select(func.count()).select_from(tombstones)).scalar_one()
        return int(count)

    def apply_tombstones(self, stones: Iterable[Tombstone]) -> int:
        """For restores: records every given tombstone this store lacks and deletes the
        keysets of every tombstoned account. Returns how many keysets were deleted."""
        stones = list(stones)
        with self._write() as conn:
            known = set(conn.execute(select(tombstones.c.account_id)).scalars())
            missing = [s for s in stones if s.account_id not in known]
            if missing:
                conn.execute(
                    insert(tombstones),
                    [{"account_id": s.account_id, "shredded_at": s.shredded_at} for s in missing],
                )
            result = conn.execute(
                delete(account_keysets).where(
                    account_keysets.c.account_id.in_(select(tombstones.c.account_id))
                )
            )
        if result.rowcount:
            self._checkpoint()
        return int(result.rowcount)

    def sync_tombstone_log(self) -> int:
        """At start: the log's tombstones into this store, dropping the keysets they name (a
        key store restored from an older backup), and this store's tombstones into the log
        (one whose line was lost). Returns how many keysets were dropped."""
        if self._log is None:
            return 0
        logged = self._log.read()
        dropped = self.apply_tombstones(logged)
        known = {s.account_id for s in logged}
        for stone in self.tombstones():
            if stone.account_id not in known:
                self._log.append(stone)
        return dropped


def _wrapped(row: Row[Any]) -> WrappedKeyset:
    r = row._mapping
    return WrappedKeyset(
        account_id=str(r["account_id"]),
        blob=bytes(r["keyset"]),
        kek_version=int(r["kek_version"]),
        created_at=r["created_at"],
        rotated_at=r["rotated_at"],
    )
