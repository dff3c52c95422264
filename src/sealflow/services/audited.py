"""The one-liner services use to put a caller's action on the audit trail, inside the write
transaction of the action (A2: if the record cannot be written the action rolls back)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from sealflow.audit.records import Action
from sealflow.regions.cells import Cell
from sealflow.services.accounts import Caller


def by_caller(cell: Cell, conn: Connection, caller: Caller, action: Action, target: str,
              at: datetime, **details: Any) -> int:
    """Record `action` on `target` by `caller` (details: ids and counts, never secrets or
    personal data in clear)."""
    details.setdefault("via", caller.token_id)  # "session:<public id>" or the token's id
    return cell.audit.record(conn, account_id=caller.account_id, actor=caller.actor,
                             action=action, target=target, at=at, details=details)
