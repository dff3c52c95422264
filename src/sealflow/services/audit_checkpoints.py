"""Housekeeping job: sign the audit log's head once a minute even when it is quiet (A1).
Appends sign every 1,000 records themselves (audit.trail)."""

from __future__ import annotations

from sealflow.clock import Clock
from sealflow.regions.cells import Cell


def checkpoint_audit(cell: Cell, clock: Clock) -> int:
    """1 when a checkpoint was signed, else 0."""
    with cell.write() as conn:
        return 0 if cell.audit.checkpoint_due(conn, clock.now()) is None else 1
