"""Region cells (R1). A cell is one region's complete set of stores; code holds the cell of
the account it works for, never "the" database. Today a cell has its database; the key
provider (issue 3), backups and audit trail (issues 6, 7) join it here."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Connection, Engine

from sealflow.core.errors import NotFound


@dataclass(frozen=True)
class Cell:
    region: str
    engine: Engine

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed on success, rolled back on error."""
        with self.engine.begin() as conn:
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot; never takes the write lock)."""
        with self.engine.connect() as conn:
            conn = conn.execution_options(readonly=True)
            with conn.begin():
                yield conn


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

    def __iter__(self) -> Iterator[str]:
        return iter(self._cells)

    def __len__(self) -> int:
        return len(self._cells)

    def dispose(self) -> None:
        for cell in self._cells.values():
            cell.engine.dispose()
