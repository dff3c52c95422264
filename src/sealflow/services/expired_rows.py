"""Rows whose use is over, removed by the housekeeping job (every minute, on the scheduler
loop) so that nothing lives longer than it is needed: ended sessions, unused OAuth and SSO
connect states, expired invitations (they hold a sealed e-mail), and login failures long past
every throttle window. Small batches, one short write each."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, or_, select

from sealflow.clock import Clock
from sealflow.db.tables import invitations, login_failures, oauth_states, sessions, sso_states
from sealflow.regions.cells import Cell

# Longer than any throttle window (15 min) and its lockout, so no decision loses a failure.
FAILURE_KEEP = timedelta(days=1)
BATCH = 1000


def _expired(now: Any) -> list[tuple[Any, Any, Any]]:
    """(table, its primary key column, the condition of rows whose use is over)."""
    return [
        (sessions, sessions.c.id_hash,
         or_(sessions.c.expires_at < now, sessions.c.revoked_at.is_not(None))),
        (oauth_states, oauth_states.c.state_hash, oauth_states.c.expires_at < now),
        (sso_states, sso_states.c.state_hash, sso_states.c.expires_at < now),
        (invitations, invitations.c.id, invitations.c.expires_at < now),
        (login_failures, login_failures.c.id, login_failures.c.at < now - FAILURE_KEEP),
    ]


def sweep_expired(cell: Cell, clock: Clock, *, batch_size: int = BATCH) -> int:
    """Deletes up to `batch_size` ended rows per table; returns how many went."""
    removed = 0
    for table, key, condition in _expired(clock.now()):
        with cell.write() as conn:
            ids = list(conn.execute(select(key).where(condition).limit(batch_size)).scalars())
            if ids:
                removed += conn.execute(delete(table).where(key.in_(ids))).rowcount
    return removed
