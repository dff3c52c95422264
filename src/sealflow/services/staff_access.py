"""Staff access grants (SPEC I7): platform staff see a customer account's data only through a
justified, time-bound grant, which the customer sees.

- A staff member (services.staff_members: on the operator's list, signed in with a second
  factor or SSO) asks for a grant on an account with a justification (10 to 1000 characters)
  and a lifetime of at most 24 hours, counted from the request: approving late does not
  extend it.
- If the account's setting `staff.require_approval` is on, the grant waits (pending) until an
  owner approves it; an owner may deny it, or revoke it at any time.
- The staff member uses it by sending its id with each request (header
  `Sealflow-Access-Grant`, api.deps): the request then acts in the customer's account as a
  viewer narrowed to identity.permissions.GRANT_SCOPES (reads only), its Caller carrying the
  grant id (the audit trail names Actor(STAFF, <staff user id>)).
- Every request under a grant is recorded before it runs (a staff_grant_reads row and a
  STAFF_ACCESS_USED audit record in one write transaction, the grant re-checked in it): if
  that write fails, the request fails and nothing is read (fail closed, A2).
- The customer lists the grants and the requests under each (GET /v1/account/staff-access).

Grants live in the customer account's cell; their id is `<region>_<uuid>` so a request finds
that cell without a directory. The justification is sealed under the customer's key (it may
quote the customer's data)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson
from sqlalchemy import Connection, func, insert, select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import accounts, users
from sealflow.db.tables_staff import staff_grant_reads, staff_grants
from sealflow.identity.permissions import GRANT_SCOPES, Forbidden, Permission, Role, StaffRole
from sealflow.regions.cells import Cells
from sealflow.services import staff_members
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller

GRANT_HEADER = "Sealflow-Access-Grant"
MAX_LIFETIME_MINUTES = 24 * 60
JUSTIFICATION_MIN, JUSTIFICATION_MAX = 10, 1000
READS_SHOWN = 500  # the latest requests listed per grant (all are counted)
# Methods a grant may be used with: it reads, never changes anything.
READ_METHODS = frozenset({"GET", "HEAD"})


class Status(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    DENIED = "denied"
    REVOKED = "revoked"
    EXPIRED = "expired"  # shown, never stored: pending or active past expires_at


class GrantRefused(Forbidden):
    """A grant that does not open the account now (unknown, not this staff member's,
    pending, denied, revoked, expired) or a request it cannot be used for (403)."""

    code = "staff_grant_refused"

    def __init__(self, message: str) -> None:
        super().__init__(StaffRole.STAFF, Permission.STAFF_ACCESS, message)


@dataclass(frozen=True)
class GrantRead:
    at: datetime
    method: str
    route: str
    path: str


@dataclass(frozen=True)
class Grant:
    id: str
    account_id: str
    staff_user_id: str
    staff_name: str | None  # None: no longer a member anywhere served
    justification: str
    status: str
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    reads_total: int
    reads: tuple[GrantRead, ...]


def requires_approval(settings_json: str | None) -> bool:
    """The account's policy (accounts.settings `staff.require_approval`; default off)."""
    try:
        settings = orjson.loads(settings_json) if settings_json else {}
    except orjson.JSONDecodeError:
        return True  # unreadable settings: the stricter policy
    staff = settings.get("staff") if isinstance(settings, dict) else None
    return isinstance(staff, dict) and staff.get("require_approval") is True


def status_of(row: Any, now: datetime) -> Status:
    if row.status in (Status.PENDING, Status.ACTIVE) and now >= row.expires_at:
        return Status.EXPIRED
    return Status(row.status)


def _check_request(justification: Any, expires_in_minutes: Any) -> str:
    issues = []
    text = justification.strip() if isinstance(justification, str) else ""
    if not JUSTIFICATION_MIN <= len(text) <= JUSTIFICATION_MAX:
        issues.append(Issue("$.justification", f"required: say why access is needed, "
                            f"{JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} characters"))
    if (not isinstance(expires_in_minutes, int) or isinstance(expires_in_minutes, bool)
            or not 1 <= expires_in_minutes <= MAX_LIFETIME_MINUTES):
        issues.append(Issue("$.expires_in_minutes", f"must be 1 to {MAX_LIFETIME_MINUTES} "
                            "minutes (a grant lasts at most 24 hours)"))
    if issues:
        raise InvalidInput("invalid staff access request", issues)
    return text


def _account_region(cells: Cells, account_id: str) -> tuple[str, str | None]:
    for region in cells:
        with cells[region].read() as conn:
            row = conn.execute(select(accounts.c.settings)
                               .where(accounts.c.id == account_id)).first()
        if row is not None:
            return region, row.settings
    raise NotFound(f"account {account_id} not found in any served region")


def _staff_actor(caller: Caller) -> Actor:
    return Actor(ActorKind.STAFF, str(caller.user_id))


def request(cells: Cells, clock: Clock, caller: Caller, *, account_id: str,
            justification: Any, expires_in_minutes: Any) -> Grant:
    """A staff member asks for access to `account_id`: active at once, or pending when the
    account requires an owner's approval."""
    staff_members.require(cells, caller)
    text = _check_request(justification, expires_in_minutes)
    region, settings = _account_region(cells, account_id)
    status = Status.PENDING if requires_approval(settings) else Status.ACTIVE
    grant_id = f"{region}_{uuid.uuid4()}"
    now = clock.now()
    cell = cells[region]
    with cell.write() as conn:
        conn.execute(insert(staff_grants).values(
            id=grant_id, account_id=account_id, staff_user_id=caller.user_id,
            staff_region=caller.region, staff_account_id=caller.account_id,
            justification=seal(cell.vault, account_id, staff_grants.name, grant_id,
                               "justification", text),
            status=status.value, requested_at=now,
            expires_at=now + timedelta(minutes=expires_in_minutes)))
        cell.audit.record(conn, account_id=account_id, actor=_staff_actor(caller),
                          action=Action.STAFF_ACCESS_GRANTED, target=f"grant:{grant_id}",
                          at=now, details={"grant": grant_id, "status": status.value,
                                           "minutes": expires_in_minutes,
                                           "via": caller.token_id})
    return _one(cells, clock, region, account_id, grant_id)


def use(cells: Cells, clock: Clock, caller: Caller, grant_id: str, *, method: str,
        route: str, path: str) -> Caller:
    """The Caller a staff member's request acts as under `grant_id`, once the request is
    recorded; GrantRefused (403) when the grant does not open the account now."""
    staff_members.require(cells, caller)
    if method not in READ_METHODS:
        raise GrantRefused("a staff access grant only reads: this request would change data")
    region = grant_id.split("_", 1)[0]
    unknown = GrantRefused("unknown staff access grant (or not yours)")
    if region not in cells or "_" not in grant_id:
        raise unknown
    cell = cells[region]
    now = clock.now()
    with cell.write() as conn:  # checked and recorded in one transaction: revoking races it
        row = conn.execute(select(staff_grants).where(staff_grants.c.id == grant_id)).first()
        if (row is None or row.staff_user_id != caller.user_id
                or row.staff_region != caller.region):
            raise unknown
        status = status_of(row, now)
        if status is not Status.ACTIVE:
            raise GrantRefused(f"this staff access grant is {status.value}"
                               + (": an owner of the account must approve it first"
                                  if status is Status.PENDING else ""))
        conn.execute(insert(staff_grant_reads).values(
            grant_id=grant_id, account_id=row.account_id, at=now, method=method,
            route=route[:200], path=path[:500]))
        cell.audit.record(conn, account_id=row.account_id, actor=_staff_actor(caller),
                          action=Action.STAFF_ACCESS_USED, target=f"{method} {path}"[:500],
                          at=now, details={"grant": grant_id, "route": f"{method} {route}",
                                           "via": caller.token_id})
    return Caller(region=region, account_id=row.account_id, token_id=caller.token_id,
                  role=Role.VIEWER.value, user_id=caller.user_id, scopes=GRANT_SCOPES,
                  method=caller.method, grant_id=grant_id)


# --- reading grants -------------------------------------------------------------------------
def _staff_name(cells: Cells, row: Any) -> str | None:
    if row.staff_region not in cells:
        return None
    cell = cells[row.staff_region]
    with cell.read() as conn:
        user = conn.execute(select(users.c.name).where(
            users.c.id == row.staff_user_id,
            users.c.account_id == row.staff_account_id)).first()
    if user is None:
        return None
    return str(open_(cell.vault, row.staff_account_id, users.name, row.staff_user_id, "name",
                     user.name))


def _grants(cells: Cells, clock: Clock, region: str, conn: Connection, rows: list[Any]
            ) -> list[Grant]:
    cell = cells[region]
    now = clock.now()
    names: dict[str, str | None] = {}
    out = []
    for row in rows:
        if row.staff_user_id not in names:
            names[row.staff_user_id] = _staff_name(cells, row)
        total = conn.execute(select(func.count()).select_from(staff_grant_reads)
                             .where(staff_grant_reads.c.grant_id == row.id)).scalar_one()
        reads = conn.execute(
            select(staff_grant_reads).where(staff_grant_reads.c.grant_id == row.id)
            .order_by(staff_grant_reads.c.at.desc(), staff_grant_reads.c.id.desc())
            .limit(READS_SHOWN)).all()
        out.append(Grant(
            id=row.id, account_id=row.account_id, staff_user_id=row.staff_user_id,
            staff_name=names[row.staff_user_id],
            justification=open_(cell.vault, row.account_id, staff_grants.name, row.id,
                                "justification", row.justification),
            status=status_of(row, now).value, requested_at=row.requested_at,
            expires_at=row.expires_at, decided_at=row.decided_at, decided_by=row.decided_by,
            revoked_at=row.revoked_at, revoked_by=row.revoked_by, reads_total=int(total),
            reads=tuple(GrantRead(at=r.at, method=r.method, route=r.route, path=r.path)
                        for r in reads)))
    return out


def _one(cells: Cells, clock: Clock, region: str, account_id: str, grant_id: str) -> Grant:
    with cells[region].read() as conn:
        rows = conn.execute(select(staff_grants).where(
            staff_grants.c.id == grant_id, staff_grants.c.account_id == account_id)).all()
        found = _grants(cells, clock, region, conn, list(rows))
    if not found:
        raise NotFound(f"staff access grant {grant_id} not found")
    return found[0]


def list_for_account(cells: Cells, clock: Clock, caller: Caller) -> list[Grant]:
    """Every grant asked on the caller's account, newest first, with the requests made."""
    with cells[caller.region].read() as conn:
        rows = conn.execute(select(staff_grants)
                            .where(staff_grants.c.account_id == caller.account_id)
                            .order_by(staff_grants.c.requested_at.desc(),
                                      staff_grants.c.id)).all()
        return _grants(cells, clock, caller.region, conn, list(rows))


def list_own(cells: Cells, clock: Clock, caller: Caller) -> list[Grant]:
    """The staff member's own grants, across every served region, newest first."""
    staff_members.require(cells, caller)
    out: list[Grant] = []
    for region in cells:
        with cells[region].read() as conn:
            rows = conn.execute(select(staff_grants).where(
                staff_grants.c.staff_user_id == caller.user_id,
                staff_grants.c.staff_region == caller.region)).all()
            out += _grants(cells, clock, region, conn, list(rows))
    return sorted(out, key=lambda g: g.requested_at, reverse=True)


# --- deciding ---------------------------------------------------------------------------------
def _decide(cells: Cells, clock: Clock, caller: Caller, grant_id: str, *,
            allowed: frozenset[Status], to: Status, stamp: str, by: str, action: Action,
            decision: str) -> Grant:
    """Move the account's grant from one of `allowed` to `to`, stamping `<stamp>_at` and
    `<stamp>_by`, with its audit record in the same transaction."""
    cell = cells[caller.region]
    now = clock.now()
    with cell.write() as conn:
        row = conn.execute(select(staff_grants).where(
            staff_grants.c.id == grant_id,
            staff_grants.c.account_id == caller.account_id)).first()
        if row is None:
            raise NotFound(f"staff access grant {grant_id} not found")
        status = status_of(row, now)
        if status not in allowed:
            raise Conflict(f"this staff access grant is {status.value}: it cannot be "
                           f"{decision} (only a grant that is "
                           f"{' or '.join(sorted(s.value for s in allowed))})")
        conn.execute(update(staff_grants).where(staff_grants.c.id == grant_id).values(
            {"status": to.value, f"{stamp}_at": now, f"{stamp}_by": by}))
        by_caller(cell, conn, caller, action, f"grant:{grant_id}", now, grant=grant_id,
                  decision=decision, staff=row.staff_user_id)
    return _one(cells, clock, caller.region, caller.account_id, grant_id)


def approve(cells: Cells, clock: Clock, caller: Caller, grant_id: str) -> Grant:
    return _decide(cells, clock, caller, grant_id, allowed=frozenset({Status.PENDING}),
                   to=Status.ACTIVE, stamp="decided", by=caller.user_id or caller.token_id,
                   action=Action.STAFF_ACCESS_GRANTED, decision="approved")


def deny(cells: Cells, clock: Clock, caller: Caller, grant_id: str) -> Grant:
    return _decide(cells, clock, caller, grant_id, allowed=frozenset({Status.PENDING}),
                   to=Status.DENIED, stamp="decided", by=caller.user_id or caller.token_id,
                   action=Action.STAFF_ACCESS_REVOKED, decision="denied")


def revoke(cells: Cells, clock: Clock, caller: Caller, grant_id: str) -> Grant:
    return _decide(cells, clock, caller, grant_id,
                   allowed=frozenset({Status.PENDING, Status.ACTIVE}), to=Status.REVOKED,
                   stamp="revoked", by=f"user:{caller.user_id or caller.token_id}",
                   action=Action.STAFF_ACCESS_REVOKED, decision="revoked")


def end_own(cells: Cells, clock: Clock, caller: Caller, grant_id: str) -> Grant:
    """A staff member ends their own grant before it expires."""
    staff_members.require(cells, caller)
    region = grant_id.split("_", 1)[0]
    if region not in cells:
        raise NotFound(f"staff access grant {grant_id} not found")
    cell = cells[region]
    now = clock.now()
    with cell.write() as conn:
        row = conn.execute(select(staff_grants).where(
            staff_grants.c.id == grant_id, staff_grants.c.staff_user_id == caller.user_id,
            staff_grants.c.staff_region == caller.region)).first()
        if row is None:
            raise NotFound(f"staff access grant {grant_id} not found")
        status = status_of(row, now)
        if status not in (Status.PENDING, Status.ACTIVE):
            raise Conflict(f"this staff access grant is already {status.value}")
        conn.execute(update(staff_grants).where(staff_grants.c.id == grant_id).values(
            status=Status.REVOKED.value, revoked_at=now, revoked_by=f"staff:{caller.user_id}"))
        cell.audit.record(conn, account_id=row.account_id, actor=_staff_actor(caller),
                          action=Action.STAFF_ACCESS_REVOKED, target=f"grant:{grant_id}",
                          at=now, details={"grant": grant_id, "decision": "ended by staff",
                                           "via": caller.token_id})
    return _one(cells, clock, region, row.account_id, grant_id)
