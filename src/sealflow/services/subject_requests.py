"""Data subject requests (D5): a member's request to get a copy of their data (export) or to
be erased, tracked against its legal deadline, and carried out.

A request is made for a member of the account (found by e-mail), under a law:
GDPR gives the controller one month (counted here as 30 days), CCPA 45 days, from receipt
(`received_at`, by default when it is entered; it may be earlier when the request came by
post or e-mail). It moves received -> in_progress -> completed, or to rejected (with a reason
code). Open requests past their due date are overdue; the listing says so and can show only
those.

Running an export request marks it completed with the EXPORT audit record in one
transaction; the archive (services.subject_export) is built when it is downloaded, within
DOWNLOAD_WINDOW after completion, each download recorded too. No copy of it is stored.
Running an erasure request (services.subject_erasure, services.subject_logs):
1. refuse the account's last owner (nothing happens); mark the request in_progress;
2. scrub the log files (they are files: done first, so a failure leaves the database as it
   was and the request can be run again);
3. one write transaction: the member's rows go (secure_delete), the ERASURE audit record is
   written, the request is completed: all or nothing (A2, fail closed); the member is added
   to the region's erasure log (services.subject_erasure_log) before the commit, so a
   restored backup cannot bring them back;
4. compact the SQLite file and WAL, and scrub the log files once more for lines written
   between 2 and 3.
Both need subject_requests.manage (owners and admins); erasing an owner also owners.manage,
as removing one does."""

from __future__ import annotations

import ipaddress
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.db.sealed import open_
from sealflow.db.tables import users
from sealflow.db.tables_subject_requests import subject_requests
from sealflow.identity.permissions import Permission, Role, authorize
from sealflow.regions.cells import Cell, Cells
from sealflow.services import subject_erasure, subject_erasure_log, subject_export, subject_logs
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity, find_by_email

LAWS: dict[str, timedelta] = {"gdpr": timedelta(days=30), "ccpa": timedelta(days=45)}
KINDS = ("export", "erasure")
OPEN = ("received", "in_progress")
REJECT_REASONS = ("identity_not_verified", "manifestly_unfounded", "excessive",
                  "legal_obligation", "withdrawn")
DOWNLOAD_WINDOW = timedelta(days=30)
MAX_BACKDATE = timedelta(days=366)
MAX_ADDRESSES = 20


@dataclass(frozen=True)
class Requester:
    """Who handles requests for an account: a member or token (API), or the operator (CLI)."""

    region: str
    account_id: str
    actor: Actor
    role: str = Role.OWNER.value
    scopes: frozenset[str] | None = None

    @classmethod
    def of(cls, caller: Caller) -> Requester:
        return cls(caller.region, caller.account_id, caller.actor, caller.role, caller.scopes)

    @classmethod
    def operator(cls, region: str, account_id: str) -> Requester:
        return cls(region, account_id, Actor(ActorKind.OPERATOR, "cli"))


@dataclass(frozen=True)
class SubjectRequest:
    id: str
    kind: str
    law: str
    member_id: str
    member_email: str | None  # while they are a member (None once erased)
    status: str
    requested_by: str
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    overdue: bool
    outcome: dict[str, Any] | None


def due_date(law: str, received_at: datetime) -> datetime:
    return received_at + LAWS[law]


def _choice(field: str, value: str, allowed: tuple[str, ...] | list[str]) -> str:
    if value not in allowed:
        raise InvalidInput(f"invalid {field}", [Issue(
            f"$.{field}", f"must be one of {', '.join(allowed)}")])
    return value


def _view(cell: Cell, conn: Connection, row: Any, now: datetime) -> SubjectRequest:
    member = conn.execute(select(users.c.email).where(
        users.c.id == row.user_id, users.c.account_id == row.account_id)).first()
    email = None if member is None else open_(
        cell.vault, row.account_id, users.name, row.user_id, "email", member.email)
    return SubjectRequest(
        id=row.id, kind=row.kind, law=row.law, member_id=row.user_id, member_email=email,
        status=row.status, requested_by=row.requested_by, received_at=row.received_at,
        due_at=row.due_at, completed_at=row.completed_at,
        overdue=row.status in OPEN and now > row.due_at,
        outcome=None if row.outcome is None else json.loads(row.outcome))


def _row(conn: Connection, req: Requester, request_id: str) -> Any:
    row = conn.execute(select(subject_requests).where(
        subject_requests.c.id == request_id,
        subject_requests.c.account_id == req.account_id)).first()
    if row is None:
        raise NotFound(f"subject request {request_id} not found")
    return row


def create(cells: Cells, clock: Clock, ident: Identity, req: Requester, *, kind: str, law: str,
           email: str, received_at: datetime | None = None) -> SubjectRequest:
    """Record a request about the account's member with `email` (NotFound when none has it:
    a person who is not a member has nothing here beyond what the account's own customer
    data may hold about them, which is the account's to handle)."""
    _choice("kind", kind, KINDS)
    _choice("law", law, list(LAWS))
    cell = cells[req.region]
    with cell.read() as conn:
        row = find_by_email(conn, ident, email)
    if row is None or row.account_id != req.account_id:
        raise NotFound("no member of this account has that e-mail address ($.email)")
    now = clock.now()
    received = received_at or now
    if received.tzinfo is None or received > now or received < now - MAX_BACKDATE:
        raise InvalidInput("invalid received_at", [Issue(
            "$.received_at", "must be a time with a zone, not in the future, and at most "
                             f"{MAX_BACKDATE.days} days ago")])
    request_id = str(uuid.uuid4())
    with cell.write() as conn:
        conn.execute(subject_requests.insert().values(
            id=request_id, account_id=req.account_id, kind=kind, law=law, user_id=row.id,
            status="received", requested_by=f"{req.actor.kind.value}:{req.actor.id}",
            received_at=received, due_at=due_date(law, received)))
        return _view(cell, conn, _row(conn, req, request_id), now)


def list_requests(cells: Cells, clock: Clock, req: Requester, *,
                  overdue_only: bool = False) -> list[SubjectRequest]:
    """The account's requests, the soonest due first; `overdue_only`: open ones past due."""
    cell, now = cells[req.region], clock.now()
    query = select(subject_requests).where(subject_requests.c.account_id == req.account_id)
    if overdue_only:
        query = query.where(subject_requests.c.status.in_(OPEN),
                            subject_requests.c.due_at < now)
    with cell.read() as conn:
        rows = conn.execute(query.order_by(subject_requests.c.due_at,
                                           subject_requests.c.id)).all()
        return [_view(cell, conn, r, now) for r in rows]


def get(cells: Cells, clock: Clock, req: Requester, request_id: str) -> SubjectRequest:
    cell = cells[req.region]
    with cell.read() as conn:
        return _view(cell, conn, _row(conn, req, request_id), clock.now())


def _open(row: Any) -> None:
    if row.status not in OPEN:
        raise Conflict(f"subject request {row.id} is {row.status} already")


def reject(cells: Cells, clock: Clock, req: Requester, request_id: str, *,
           reason: str) -> SubjectRequest:
    _choice("reason", reason, REJECT_REASONS)
    cell, now = cells[req.region], clock.now()
    with cell.write() as conn:
        row = _row(conn, req, request_id)
        _open(row)
        conn.execute(update(subject_requests).where(subject_requests.c.id == row.id).values(
            status="rejected", completed_at=now, outcome=json.dumps({"reason": reason})))
        return _view(cell, conn, _row(conn, req, request_id), now)


def check_addresses(addresses: list[str] | None) -> list[str]:
    """IP addresses as the server writes them (compressed IPv6), or InvalidInput."""
    out = []
    for i, value in enumerate(addresses or []):
        try:
            out.append(str(ipaddress.ip_address(value.strip())))
        except ValueError:
            raise InvalidInput("invalid addresses", [Issue(
                f"$.addresses[{i}]", "must be an IPv4 or IPv6 address")]) from None
    if len(out) > MAX_ADDRESSES:
        raise InvalidInput("invalid addresses", [Issue(
            "$.addresses", f"at most {MAX_ADDRESSES} addresses")])
    return out


def run(cells: Cells, clock: Clock, req: Requester, request_id: str, *, logs_dir: Path,
        erasure_log: Path, addresses: list[str] | None = None,
        pseudonymise: Callable[[str], str] | None = None) -> SubjectRequest:
    """Carry the request out (see the module's docstring); answers it completed.
    `addresses`: IP addresses the person says they used (an erasure then also removes what is
    kept under them, raw or as `pseudonymise` makes them; they are not stored). The addresses
    of their logins are found in the audit trail without being given."""
    cell = cells[req.region]
    with cell.read() as conn:
        row = _row(conn, req, request_id)
    _open(row)
    given = check_addresses(addresses)
    if given and pseudonymise is None:
        raise ValueError("addresses need the pseudonymiser of the access log")
    if row.kind == "export":
        return _run_export(cell, clock, req, row)
    extra = {a: pseudonymise(a) for a in given} if pseudonymise is not None else {}
    return _run_erasure(cell, clock, req, row, (logs_dir, erasure_log), extra)


def _audit(cell: Cell, conn: Connection, req: Requester, action: Action, row: Any,
           at: datetime, **details: Any) -> None:
    cell.audit.record(conn, account_id=req.account_id, actor=req.actor, action=action,
                      target=f"user:{row.user_id}", at=at,
                      details={"request": row.id, "law": row.law, **details})


def _run_export(cell: Cell, clock: Clock, req: Requester, row: Any) -> SubjectRequest:
    now = clock.now()
    with cell.read() as conn:  # it can be built (the member is there, their data opens)
        archive = subject_export.build_archive(cell, conn, req.account_id, row.user_id, now)
    sections = {k: len(v) if isinstance(v, list) else 1 for k, v in archive["data"].items()}
    with cell.write() as conn:
        _open(_row(conn, req, row.id))
        conn.execute(update(subject_requests).where(subject_requests.c.id == row.id).values(
            status="completed", completed_at=now, outcome=json.dumps({"sections": sections})))
        _audit(cell, conn, req, Action.EXPORT, row, now, step="completed")
        return _view(cell, conn, _row(conn, req, row.id), now)


def download(cells: Cells, clock: Clock, req: Requester, request_id: str) -> dict[str, Any]:
    """The archive of a completed export request (built now; the download is recorded
    before the archive is handed over)."""
    cell, now = cells[req.region], clock.now()
    with cell.read() as conn:
        row = _row(conn, req, request_id)
        if row.kind != "export" or row.status != "completed":
            raise Conflict(f"subject request {request_id} is not a completed export "
                           f"({row.kind}, {row.status})")
        if now > row.completed_at + DOWNLOAD_WINDOW:
            raise Conflict(f"the export of request {request_id} could be downloaded for "
                           f"{DOWNLOAD_WINDOW.days} days after completion; make a new request")
        archive = subject_export.build_archive(cell, conn, req.account_id, row.user_id, now)
    with cell.write() as conn:
        _audit(cell, conn, req, Action.EXPORT, row, now, step="downloaded")
    return archive


class LogScrubFailed(Conflict):
    """A log file could not be rewritten (HTTP 409, retryable): the request stays in progress
    and can be run again."""

    code = "log_scrub_failed"
    retryable = True


def _scrub(logs_dir: Path, idents: subject_logs.Identifiers) -> int:
    try:
        return sum(subject_logs.scrub_logs(logs_dir, idents).values())
    except OSError as err:
        raise LogScrubFailed(f"could not rewrite the log file {Path(err.filename or '').name}"
                             f": {err.strerror}; run the request again") from None


def _authorize(conn: Connection, req: Requester, row: Any) -> None:
    """Erasing an owner needs owners.manage, as removing one does (checked with the role the
    member has now, in the transaction that acts on it)."""
    role = conn.execute(select(users.c.role).where(
        users.c.id == row.user_id, users.c.account_id == req.account_id)).scalar()
    if role == Role.OWNER.value:
        authorize(req.role, Permission.OWNERS_MANAGE, req.scopes)


def _run_erasure(cell: Cell, clock: Clock, req: Requester, row: Any, paths: tuple[Path, Path],
                 addresses: dict[str, str]) -> SubjectRequest:
    logs_dir, erasure_log = paths
    with cell.read() as conn:  # reads the audit trail: not under the write lock
        who = subject_export.footprint(cell, conn, req.account_id, row.user_id,
                                       missing_ok=True)
    with cell.write() as conn:
        _open(_row(conn, req, row.id))
        _authorize(conn, req, row)
        subject_erasure.check_not_last_owner(conn, req.account_id, row.user_id)
        conn.execute(update(subject_requests).where(subject_requests.c.id == row.id)
                     .values(status="in_progress"))
    who = replace(who, ip_pseudonyms=who.ip_pseudonyms | set(addresses.values()))
    idents = subject_logs.Identifiers(
        emails=frozenset({who.email} - {""}), words=frozenset({who.name, *addresses} - {""}),
        ids=frozenset({who.user_id, *who.token_ids, *who.session_ids, *who.ip_pseudonyms}))
    lines = _scrub(logs_dir, idents)
    now = clock.now()
    with cell.write() as conn:
        _open(_row(conn, req, row.id))
        _authorize(conn, req, row)
        with subject_erasure.secure_delete(conn):
            removed = subject_erasure.erase_rows(cell, conn, req.account_id, who)
            outcome: dict[str, Any] = {"removed": removed, "log_lines_removed": lines}
            conn.execute(update(subject_requests).where(subject_requests.c.id == row.id)
                         .values(status="completed", completed_at=now,
                                 outcome=json.dumps(outcome)))
            _audit(cell, conn, req, Action.ERASURE, row, now, removed=removed,
                   log_lines_removed=lines)
            # Last, before the commit: a restored backup cannot bring them back unnoticed.
            subject_erasure_log.append(erasure_log, subject_erasure_log.entry(
                req.account_id, row.user_id, row.id, now))
    compacted = subject_erasure.compact(cell.engine)
    # Lines written while the rows were still there. The erasure is committed: a file that
    # cannot be rewritten now is reported in the outcome, not raised.
    try:
        late, scrubbed = _scrub(logs_dir, idents), True
    except LogScrubFailed:
        late, scrubbed = 0, False
    with cell.write() as conn:
        outcome.update(log_lines_removed=lines + late, files_compacted=compacted,
                       logs_rescrubbed=scrubbed)
        conn.execute(update(subject_requests).where(subject_requests.c.id == row.id)
                     .values(outcome=json.dumps(outcome)))
        return _view(cell, conn, _row(conn, req, row.id), now)
