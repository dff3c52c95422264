"""Alert deduplication and cursors, in the cell's database (db/tables_monitoring.py).

`claim` is a compare-and-set: an alert (rule, key) fires when it never fired or last fired a
whole window ago, and only the one node whose write wins sends it."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealflow.db.tables_monitoring import alert_state, monitor_cursors


def claim(conn: Connection, rule: str, key: str, now: datetime, window: timedelta) -> bool:
    """True when this (rule, key) may fire now (and it is recorded as fired)."""
    key = key[:300]
    won = conn.execute(
        update(alert_state)
        .where(alert_state.c.rule == rule, alert_state.c.key == key,
               alert_state.c.fired_at <= now - window)
        .values(fired_at=now, fired=alert_state.c.fired + 1)).rowcount
    if won:
        return True
    exists = conn.execute(select(alert_state.c.fired_at).where(
        alert_state.c.rule == rule, alert_state.c.key == key)).first()
    if exists is not None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(insert(alert_state).values(rule=rule, key=key, fired_at=now, fired=1))
    except IntegrityError:  # another node inserted it first
        return False
    return True


def read_cursor(conn: Connection, name: str) -> tuple[int, str | None] | None:
    row = conn.execute(select(monitor_cursors.c.seq, monitor_cursors.c.hash)
                       .where(monitor_cursors.c.name == name)).first()
    return None if row is None else (int(row.seq), row.hash)


def write_cursor(conn: Connection, name: str, seq: int, hash_: str | None,
                 now: datetime) -> None:
    done = conn.execute(update(monitor_cursors).where(monitor_cursors.c.name == name)
                        .values(seq=seq, hash=hash_, at=now)).rowcount
    if not done:
        conn.execute(insert(monitor_cursors).values(name=name, seq=seq, hash=hash_, at=now))
