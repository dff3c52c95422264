"""A region's audit trail as the services use it: `record()` an event inside the transaction
of the action it describes (A2, fail closed), and a checkpoint signed when one is due.

One object per cell (regions.cells.Cell.audit). Services never build records by hand; they
call `trail.record(conn, ...)` with the write connection they already hold. If the record
cannot be written the exception propagates, the transaction rolls back and the action did not
happen. Checkpoints ride on the same transaction (every `every_records`), and the periodic
housekeeping calls `checkpoint_due` so a quiet log is still signed every minute."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import SQLAlchemyError

from sealflow.audit import log
from sealflow.audit.records import SYSTEM, Action, Actor, AuditEvent
from sealflow.audit.signing import Signer
from sealflow.core.errors import SealflowError
from sealflow.monitoring.metrics import metrics


class AuditUnavailable(SealflowError):
    """The audit record could not be written, so the action was not performed (A2)."""

    code = "audit_unavailable"
    retryable = True


class AuditTrail:
    def __init__(self, region: str, signer: Signer,
                 policy: log.CheckpointPolicy | None = None, *,
                 key_created: bool = False) -> None:
        self.region = region
        self.signer = signer
        self.checkpointer = log.Checkpointer(region, signer, policy)
        self._key_created = key_created  # this process made the signing key file

    def record_key_creation(self, conn: Connection, at: datetime) -> None:
        """Put the making of the signing key on the trail, once the database is migrated."""
        if self._key_created:
            self.record(conn, account_id=None, actor=SYSTEM, action=Action.AUDIT_KEY_CREATED,
                        target=f"audit-key:{self.signer.key_id}", at=at,
                        details={"public_key": self.signer.verifier.public_b64()})
            self._key_created = False

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
        started = time.perf_counter()
        try:
            seq = log.append(conn, event)
            metrics().audit_append_seconds.observe(time.perf_counter() - started)
            self.checkpointer.after_append(conn, seq, event.at)
        except SQLAlchemyError as err:
            # The caller's transaction rolls back with this: the action did not happen.
            raise AuditUnavailable(
                f"the audit trail of region {self.region} cannot be written "
                f"({type(getattr(err, 'orig', None) or err).__name__}), so "
                f"{event.action.value} was not done; "
                "try again later") from err
        return seq

    def checkpoint_due(self, conn: Connection, now: datetime) -> log.Checkpoint | None:
        """Sign the head if the time policy says so (called by housekeeping every minute)."""
        size, _ = log.head(conn)
        if size == 0:
            return None
        return self.checkpointer.after_append(conn, size, now)
