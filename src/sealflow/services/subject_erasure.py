"""Erasing a member's rows from a cell (D5, GDPR art. 17, CCPA right to delete): the part of
an erasure that runs inside one write transaction (services.subject_requests drives it, with
the log scrub and the audit record).

What goes (the tables services.subject_export.COVERAGE lists):
- the member's row: e-mail and name (sealed), password hash, TOTP secret, and with it the
  e-mail's login lookup hash; their recovery codes, sessions, SSO identities, the API tokens
  they made (they stop working: their maker is gone), invitations sent to their e-mail;
- login failures kept under their id, their second factor, their e-mail's lookup hash and
  the address pseudonyms they logged in from;
- their personal authentications (usable by no one else), with OAuth connects in flight;
- their platform staff entry, and alert state keyed by their id or address pseudonyms.
What stays: the audit trail, unchanged (A1: append-only, hash-chained). It never held their
e-mail, name or address: only their member id (an opaque uuid) and pseudonyms. Once the rows
above are gone nothing maps that id back to the person, so the trail is pseudonymised in
place and `sealflow audit verify` still passes. Shared authentications and workflows they
made, audit sinks they set up, and staff access grants they asked for or decided (the
customer's record of staff access, I7) stay, naming them only by that id.

Refused when the member is the account's last owner (LastOwner): the account would have no
one able to manage it; make another member owner first, or delete the account (D4).

On SQLite the transaction runs with `secure_delete` (freed space is zeroed), and `compact()`
then gives free pages back (incremental vacuum) and truncates the WAL (see compact() for
what only an offline VACUUM removes). On PostgreSQL the dead rows stay until autovacuum
reclaims them; they are sealed under the account's key, like every copy of them in backups
(D6 keeps backups 14 days at most)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, or_, select

from sealflow.core.errors import Conflict
from sealflow.db.sealed import open_
from sealflow.db.tables import (
    api_tokens,
    authentications,
    invitations,
    login_failures,
    oauth_states,
    recovery_codes,
    sessions,
    sso_identities,
    users,
)
from sealflow.db.tables_monitoring import alert_state
from sealflow.db.tables_staff import platform_staff
from sealflow.identity.permissions import Role
from sealflow.regions.cells import Cell
from sealflow.services.subject_export import Footprint, alert_keys


class LastOwner(Conflict):
    """Erasing the account's last owner would leave it unmanageable (HTTP 409)."""

    code = "last_owner"

    def __init__(self) -> None:
        super().__init__("this member is the account's last owner: make another member "
                         "owner first, or delete the account; not retryable as it stands")


def _other_owners(account_id: str, user_id: str) -> Any:
    others = users.alias("others")
    return (select(func.count()).select_from(others).where(
        others.c.account_id == account_id, others.c.role == Role.OWNER.value,
        others.c.disabled_at.is_(None), others.c.id != user_id).scalar_subquery())


def check_not_last_owner(conn: Connection, account_id: str, user_id: str) -> None:
    row = conn.execute(select(users.c.role).where(
        users.c.id == user_id, users.c.account_id == account_id)).first()
    if row is not None and row.role == Role.OWNER.value and not conn.execute(
            select(_other_owners(account_id, user_id))).scalar_one():
        raise LastOwner()


@contextmanager
def secure_delete(conn: Connection) -> Iterator[None]:
    """SQLite zeroes what the enclosed statements free (the setting is per connection: it is
    put back afterwards, pooled connections keep their usual speed)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    before = conn.exec_driver_sql("PRAGMA secure_delete").scalar()
    conn.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        conn.exec_driver_sql(f"PRAGMA secure_delete={int(before or 0)}")


def erase_rows(cell: Cell, conn: Connection, account_id: str, who: Footprint) -> dict[str, int]:
    """Delete the member's rows in the caller's transaction; rows removed per table. Raises
    LastOwner (nothing removed) when they are the account's last owner."""
    uid = who.user_id
    check_not_last_owner(conn, account_id, uid)
    removed: dict[str, int] = {}

    def gone(table: str, n: int) -> None:
        removed[table] = removed.get(table, 0) + max(n, 0)

    gone(recovery_codes.name, conn.execute(delete(recovery_codes).where(
        recovery_codes.c.user_id == uid, recovery_codes.c.account_id == account_id)).rowcount)
    gone(sessions.name, conn.execute(delete(sessions).where(
        sessions.c.user_id == uid, sessions.c.account_id == account_id)).rowcount)
    gone(sso_identities.name, conn.execute(delete(sso_identities).where(
        sso_identities.c.user_id == uid, sso_identities.c.account_id == account_id)).rowcount)
    gone(api_tokens.name, conn.execute(delete(api_tokens).where(
        api_tokens.c.user_id == uid, api_tokens.c.account_id == account_id)).rowcount)
    gone(login_failures.name, conn.execute(delete(login_failures).where(
        login_failures.c.key.in_(who.failure_keys()))).rowcount)
    if who.email:
        sent_to = [inv.id for inv in conn.execute(
            select(invitations.c.id, invitations.c.email)
            .where(invitations.c.account_id == account_id))
            if open_(cell.vault, account_id, invitations.name, inv.id, "email", inv.email)
            == who.email]
        if sent_to:
            gone(invitations.name, conn.execute(
                delete(invitations).where(invitations.c.id.in_(sent_to))).rowcount)
    gone(platform_staff.name, conn.execute(delete(platform_staff).where(
        platform_staff.c.user_id == uid)).rowcount)
    gone(alert_state.name, conn.execute(delete(alert_state).where(
        alert_keys(uid, who.ip_pseudonyms))).rowcount)
    personal = select(authentications.c.id).where(
        authentications.c.account_id == account_id, authentications.c.owner_id == uid,
        authentications.c.shared.is_(False))
    conn.execute(delete(oauth_states).where(
        oauth_states.c.authentication_id.in_(personal.scalar_subquery())))
    gone(authentications.name, conn.execute(delete(authentications).where(
        authentications.c.id.in_(personal.scalar_subquery()))).rowcount)
    # The member last, in the statement that keeps an owner (a concurrent role change
    # cannot slip between the check above and this).
    n = conn.execute(delete(users).where(
        users.c.id == uid, users.c.account_id == account_id,
        or_(users.c.role != Role.OWNER.value, _other_owners(account_id, uid) > 0))).rowcount
    if n != 1 and who.email:  # the member was there when the footprint was taken
        raise LastOwner()
    gone(users.name, n)
    return {k: v for k, v in removed.items() if v}


def compact(engine: Engine) -> bool:
    """SQLite: give the free pages back (incremental vacuum: what they held, stale copies of
    erased rows included, leaves the file) and truncate the WAL. Not a full VACUUM: that
    rewrites the whole file under the write lock, stalling every writer for seconds on a
    large database; bytes left inside pages still in use by earlier updates go only with
    `sealflow purge --compact` (server stopped). True when done; False when another
    connection kept it from finishing (the next checkpoint finishes the WAL part) or on
    PostgreSQL (nothing to do at this level)."""
    if engine.dialect.name != "sqlite":
        return False
    raw = engine.raw_connection()  # outside any transaction: the driver autocommits
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("PRAGMA incremental_vacuum")
            busy = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except Exception:
            return False
        finally:
            cursor.close()
    finally:
        raw.close()
    return bool(busy is not None and busy[0] == 0)
