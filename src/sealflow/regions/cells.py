"""Region cells (R1). A cell is one region's complete set of stores; code holds the cell of
the account it works for, never "the" database. A cell has its database and its vault (the
key store, apart from the data, and the KEK provider, issue 3) and its audit trail (signed
with the region's own key)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine

from sealflow.audit.trail import AuditTrail
from sealflow.core.errors import NotFound
from sealflow.vault.keystore import KeyStore
from sealflow.vault.providers.base import KeyProvider
from sealflow.vault.vault import Vault


@dataclass(frozen=True)
class Cell:
    region: str
    engine: Engine
    vault: Vault
    keystore_engine: Engine  # the key store's own database (never the cell's)
    provider: KeyProvider = field(compare=False, repr=False)
    # The vault's key store, for start-up upkeep (bootstrap.migrate_all: the tombstone log).
    keystore: KeyStore = field(compare=False, repr=False)
    # The region's audit trail (A1): services record events through it inside their writes.
    audit: AuditTrail = field(compare=False, repr=False)
    # The event loop's thread keeps one connection per mode: every engine.begin() would
    # otherwise check a connection out of the pool and build a Connection (~35 us each).
    _local: threading.local = field(default_factory=threading.local, compare=False, repr=False)

    def _kept(self, mode: str) -> Connection | None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # threadpool and CLI threads: use the pool
            return None
        conn: Connection | None = getattr(self._local, mode, None)
        if conn is not None and (conn.closed or conn.invalidated):
            conn = None
        if conn is None:
            conn = self.engine.connect()
            if mode == "reader":
                conn.execution_options(readonly=True)
            setattr(self._local, mode, conn)
        return None if conn.in_transaction() else conn  # nested use: a pooled one

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on error."""
        conn = self._kept("writer")
        if conn is None:
            with self.engine.begin() as conn:
                yield conn
            return
        with conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot; never takes the write lock)."""
        kept = self._kept("reader")
        if kept is not None:
            with kept.begin():
                yield kept
            return
        with self.engine.connect() as conn:
            conn = conn.execution_options(readonly=True)
            with conn.begin():
                yield conn

    def dispose(self) -> None:
        self.close_kept()
        self.engine.dispose()
        self.keystore_engine.dispose()
        close = getattr(self.provider, "close", None)  # transit: its HTTP client
        if close is not None:
            close()

    def close_kept(self) -> None:
        for mode in ("writer", "reader"):
            conn = getattr(self._local, mode, None)
            if conn is not None:
                conn.close()
                setattr(self._local, mode, None)


class Cells(Mapping[str, Cell]):
    """The cells this deployment serves (R2: one region or several)."""

    def __init__(self, cells: Mapping[str, Cell]) -> None:
        self._cells = dict(cells)

    def __getitem__(self, region: str) -> Cell:
        try:
            return self._cells[region]
        except KeyError:
            raise NotFound(
                f"region {region!r} is not served here (served: {', '.join(self._cells)})"
            ) from None

    def __contains__(self, region: object) -> bool:
        # Mapping's default catches only KeyError; __getitem__ raises NotFound.
        return region in self._cells

    def __iter__(self) -> Iterator[str]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)

    def dispose(self) -> None:
        for cell in self._cells.values():
            cell.dispose()
