"""A region's audit trail as the services use it: `record()` an event inside the transaction
of the action it describes (A2, fail closed), and a checkpoint signed when one is due.

One object per cell (regions.cells.Cell.audit). Services never build records by hand; they
call `trail.record(conn, ...)` with the write connection they already hold. If the record
cannot be written the exception propagates, the transaction rolls back and the action did not
happen. Checkpoints ride on the same transaction (every `every_records`), and the periodic
housekeeping calls `checkpoint_due` so a quiet log is still signed every minute."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from sealflow.audit import log
from sealflow.audit.records import Action, Actor, AuditEvent
from sealflow.audit.signing import Signer


class AuditTrail:
    def __init__(self, region: str, signer: Signer,
                 policy: log.CheckpointPolicy | None = None) -> None:
        self.region = region
        self.signer = signer
        self.checkpointer = log.Checkpointer(region, signer, policy)

    def record(self, conn: Connection, *, account_id: str | None, actor: Actor,
               action: Action, target: str, at: datetime,
               details: dict[str, Any] | None = None) -> int:
        """Append one event in the caller's open transaction; returns its seq."""
        event = AuditEvent(region=self.region, account_id=account_id, actor=actor,
                           action=action, target=target, at=at, details=details or {})
        return self.append(conn, event)

    def append(self, conn: Connection, event: AuditEvent) -> int:
        if event.region != self.region:
            raise ValueError(f"an event of region {event.region} given to {self.region}'s trail")
        seq = log.append(conn, event)
        self.checkpointer.after_append(conn, seq, event.at)
        return seq

    def checkpoint_due(self, conn: Connection, now: datetime) -> log.Checkpoint | None:
        """Sign the head if the time policy says so (called by housekeeping every minute)."""
        size, _ = log.head(conn)
        if size == 0:
            return None
        return self.checkpointer.after_append(conn, size, now)
