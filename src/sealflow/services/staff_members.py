"""Platform staff (I7): the operator's list of people who may ask for access to customer
accounts, and the check every staff action passes.

Staff are ordinary members of some account (the operator's own, typically) whom the operator
marked with `sealflow staff add --email E`; only the CLI adds or removes them (no API route
can make anyone staff). Being staff gives nothing by itself: the member asks a customer
account for a justified, time-bound grant (services.staff_access). Every staff action needs
a login session signed in with a second factor or through SSO (SPEC I7): an API token, or a
password-only session, is refused whatever the member's role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, NotFound
from sealflow.db.sealed import open_
from sealflow.db.tables import users
from sealflow.db.tables_staff import platform_staff
from sealflow.identity.permissions import Forbidden, Permission, StaffRole, authorize
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity, find_by_email

OPERATOR = Actor(ActorKind.OPERATOR, "cli")
# How a session must have been signed in for staff work (sessions.method): a password with
# the second factor (or one of its recovery codes), or single sign-on.
STRONG_METHODS = frozenset({"password+totp", "password+recovery_code", "sso"})


class StaffSecondFactorRequired(Forbidden):
    """A staff member whose session was not signed in with a second factor or SSO (403)."""

    code = "staff_second_factor_required"


@dataclass(frozen=True)
class StaffMember:
    user_id: str
    region: str
    account_id: str
    name: str
    email: str
    totp_enabled: bool
    added_at: datetime


def _find_user(cells: Cells, ident: Identity, email: str) -> tuple[str, Any]:
    for region in cells:
        with cells[region].read() as conn:
            row = find_by_email(conn, ident, email)
        if row is not None:
            return region, row
    raise NotFound("no member with that e-mail address in any served region (the staff "
                   "member signs up or is invited to an account first)")


def _member(cells: Cells, region: str, row: Any, added_at: datetime) -> StaffMember:
    vault = cells[region].vault
    return StaffMember(
        user_id=row.id, region=region, account_id=row.account_id,
        name=open_(vault, row.account_id, users.name, row.id, "name", row.name),
        email=open_(vault, row.account_id, users.name, row.id, "email", row.email),
        totp_enabled=row.totp_enabled_at is not None, added_at=added_at)


def add(cells: Cells, clock: Clock, ident: Identity, email: str) -> StaffMember:
    """Mark the member with `email` as platform staff (operator only: the CLI)."""
    region, row = _find_user(cells, ident, email)
    now = clock.now()
    cell = cells[region]
    with cell.write() as conn:
        if conn.execute(select(platform_staff.c.user_id)
                        .where(platform_staff.c.user_id == row.id)).first() is not None:
            raise Conflict("that member is already platform staff")
        conn.execute(insert(platform_staff).values(
            user_id=row.id, account_id=row.account_id, added_at=now, added_by="operator:cli"))
        cell.audit.record(conn, account_id=row.account_id, actor=OPERATOR,
                          action=Action.STAFF_ADDED, target=f"user:{row.id}", at=now,
                          details={})
    return _member(cells, region, row, now)


def remove(cells: Cells, clock: Clock, ident: Identity, email: str) -> StaffMember:
    """Take the member off the staff list: their grants stop working at the next request."""
    region, row = _find_user(cells, ident, email)
    now = clock.now()
    cell = cells[region]
    with cell.write() as conn:
        added = conn.execute(select(platform_staff.c.added_at)
                             .where(platform_staff.c.user_id == row.id)).scalar()
        if added is None:
            raise NotFound("that member is not platform staff")
        conn.execute(delete(platform_staff).where(platform_staff.c.user_id == row.id))
        cell.audit.record(conn, account_id=row.account_id, actor=OPERATOR,
                          action=Action.STAFF_REMOVED, target=f"user:{row.id}", at=now,
                          details={})
    return _member(cells, region, row, added)


def list_staff(cells: Cells) -> list[StaffMember]:
    out = []
    for region in cells:
        with cells[region].read() as conn:
            rows = conn.execute(
                select(users, platform_staff.c.added_at)
                .join(platform_staff, platform_staff.c.user_id == users.c.id)
                .where(platform_staff.c.account_id == users.c.account_id)
                .order_by(platform_staff.c.added_at, users.c.id)).all()
        out += [_member(cells, region, r, r.added_at) for r in rows]
    return out


def is_staff(cells: Cells, region: str, user_id: str) -> bool:
    """Is `user_id` (a member in `region`) on the staff list and still an enabled member?"""
    with cells[region].read() as conn:
        row = conn.execute(
            select(users.c.id).join(platform_staff, platform_staff.c.user_id == users.c.id)
            .where(users.c.id == user_id, users.c.disabled_at.is_(None),
                   platform_staff.c.account_id == users.c.account_id)).first()
    return row is not None


def require(cells: Cells, caller: Caller) -> None:
    """Return if `caller` may act as platform staff: a member on the staff list (the
    permission staff.access, decided by identity.permissions.authorize) whose session was
    signed in with a second factor or SSO. Forbidden otherwise. A caller already acting
    under a grant is not staff there (a grant never opens another)."""
    staff = (caller.user_id is not None and caller.grant_id is None
             and is_staff(cells, caller.region, caller.user_id))
    authorize(StaffRole.STAFF if staff else caller.role, Permission.STAFF_ACCESS,
              caller.scopes)
    if caller.method not in STRONG_METHODS:
        raise StaffSecondFactorRequired(
            StaffRole.STAFF, Permission.STAFF_ACCESS,
            "platform staff must be signed in with a second factor or through SSO: enrol "
            "one (POST /v1/me/totp), then log in again with its code (API tokens cannot "
            "be used for staff access)")
