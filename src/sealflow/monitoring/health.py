"""Readiness (A3): can this process serve? Each served region's database answers a query,
each region's key provider wraps and unwraps a probe (a removed key file, a sealed or
unreachable transit server fail here, not at the first customer request), and the embedded
queue's claim loops run (when this process runs workers).

Every check reports "ok" or "unavailable (<error kind>)": the kind of error, never its text
(which could carry a path, an address or a token)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

from sealflow.regions.cells import Cell, Cells

OK = "ok"
_PROBE = b"sealflow readiness probe"
_PROBE_AAD = b"sealflow/readyz/v1"


@dataclass(frozen=True)
class Readiness:
    checks: dict[str, str]

    @property
    def ready(self) -> bool:
        return all(v == OK for v in self.checks.values())

    @property
    def failing(self) -> list[str]:
        return [k for k, v in self.checks.items() if v != OK]


def _kind(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return f"unavailable ({code or type(exc).__name__})"


def _run(check: Callable[[], None]) -> str:
    try:
        check()
    except Exception as exc:  # reported, not raised: readiness names the failing part
        return _kind(exc)
    return OK


def _database(cell: Cell) -> None:
    with cell.read() as conn:
        conn.execute(text("SELECT 1"))


def _key_provider(cell: Cell) -> None:
    provider = cell.provider
    if provider.decrypt(provider.encrypt(_PROBE, _PROBE_AAD), _PROBE_AAD) != _PROBE:
        raise RuntimeError("key provider round trip returned other bytes")


def readiness(cells: Cells, queue: Any | None) -> Readiness:
    """`queue`: the embedded queue when this process runs workers, else None (not checked)."""
    checks: dict[str, str] = {}
    for region in cells:
        cell = cells[region]
        checks[f"database:{region}"] = _run(functools.partial(_database, cell))
        checks[f"key_provider:{region}"] = _run(functools.partial(_key_provider, cell))
    if queue is not None:
        checks["queue"] = OK if queue.running else "unavailable (worker loops stopped)"
    return Readiness(checks)
