"""Members of an account (I1): list, invite (the link's token shown once, its hash kept, 7
days), accept an invitation (becomes a member with a password), change a role, remove.
Who may do what is identity.permissions.authorize_role_change; that an account always keeps
an owner is enforced here, in the same statement that would remove the last one."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import invitations, recovery_codes, sessions, users
from sealflow.identity.password_policy import check_password
from sealflow.identity.permissions import Role, authorize_role_change
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller, Unauthenticated
from sealflow.services.audited import by_caller
from sealflow.services.users import Identity, email_hash, find_by_email, normalize_email

INVITATION_TTL = timedelta(days=7)
INVITATION_PREFIX = "sfi_"
_INVALID_INVITATION = "invalid, used or expired invitation"
_WS = " \t\n\r\f\v"
_EMAIL = re.compile(rf"[^@{_WS}]+@[^@{_WS}]+\.[^@{_WS}]+")


@dataclass(frozen=True)
class Member:
    id: str
    email: str
    name: str
    role: str
    totp_enabled: bool
    created_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class Invitation:
    id: str
    token: str  # shown once
    email: str
    role: str
    expires_at: datetime


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvalidInput("invalid role", [Issue(
            "$.role", f"must be one of {', '.join(r.value for r in Role)}")]) from None


def _email(value: str) -> str:
    email = normalize_email(value)
    if not _EMAIL.fullmatch(email):
        raise InvalidInput("invalid e-mail", [Issue("$.email", "must be an e-mail address")])
    return email


def list_members(cells: Cells, caller: Caller) -> list[Member]:
    cell = cells[caller.region]
    with cell.read() as conn:
        rows = conn.execute(select(users).where(users.c.account_id == caller.account_id)
                            .order_by(users.c.created_at, users.c.id)).all()
    return [Member(id=r.id,
                   email=open_(cell.vault, caller.account_id, users.name, r.id, "email", r.email),
                   name=open_(cell.vault, caller.account_id, users.name, r.id, "name", r.name),
                   role=r.role, totp_enabled=r.totp_enabled_at is not None,
                   created_at=r.created_at, disabled_at=r.disabled_at) for r in rows]


def invite(cells: Cells, clock: Clock, ident: Identity, caller: Caller, *, email: str,
           role: str) -> Invitation:
    new = _role(role)
    authorize_role_change(caller.role, None, new, caller.scopes)
    address = _email(email)
    cell = cells[caller.region]
    with cell.read() as conn:
        if find_by_email(conn, ident, address) is not None:
            raise Conflict("that e-mail address is already a member")
    token = f"{INVITATION_PREFIX}{caller.region}_{secrets.token_urlsafe(32)}"
    inv_id = str(uuid.uuid4())
    now = clock.now()
    with cell.write() as conn:
        conn.execute(insert(invitations).values(
            id=inv_id, account_id=caller.account_id, token_hash=_sha256(token),
            email=seal(cell.vault, caller.account_id, invitations.name, inv_id, "email", address),
            role=new.value, invited_by=caller.user_id or caller.token_id, created_at=now,
            expires_at=now + INVITATION_TTL))
        by_caller(cell, conn, caller, Action.MEMBER_INVITED, f"invitation:{inv_id}", now,
                  role=new.value)
    return Invitation(id=inv_id, token=token, email=address, role=new.value,
                      expires_at=now + INVITATION_TTL)


def accept(cells: Cells, clock: Clock, ident: Identity, *, token: str, name: str,
           password: str) -> Member:
    """The invited person becomes a member with `name` and `password` (the password policy
    applies). The invitation works once."""
    failure = Unauthenticated(_INVALID_INVITATION)
    region = token[len(INVITATION_PREFIX):].split("_", 1)[0]
    if not token.startswith(INVITATION_PREFIX) or region not in set(cells):
        raise failure
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("invalid name", [Issue("$.name", "must be 1 to 200 characters")])
    cell = cells[region]
    now = clock.now()
    with cell.read() as conn:
        inv = conn.execute(select(invitations).where(
            invitations.c.token_hash == _sha256(token))).first()
    if inv is None or inv.accepted_at is not None or now >= inv.expires_at:
        raise failure
    email = open_(cell.vault, inv.account_id, invitations.name, inv.id, "email", inv.email)
    check_password(password, context=[email, email.partition("@")[0], name])
    user_id = str(uuid.uuid4())
    password_hash = ident.hasher.hash(password)
    try:
        with cell.write() as conn:
            used = conn.execute(update(invitations).where(
                invitations.c.id == inv.id, invitations.c.accepted_at.is_(None))
                .values(accepted_at=now)).rowcount
            if used != 1:
                raise failure
            conn.execute(insert(users).values(
                id=user_id, account_id=inv.account_id, email_hash=email_hash(ident, email),
                email=seal(cell.vault, inv.account_id, users.name, user_id, "email", email),
                name=seal(cell.vault, inv.account_id, users.name, user_id, "name", name),
                password_hash=password_hash, role=inv.role, created_at=now))
            cell.audit.record(conn, account_id=inv.account_id,
                              actor=Actor(ActorKind.USER, user_id), action=Action.MEMBER_JOINED,
                              target=f"user:{user_id}", at=now,
                              details={"invitation": inv.id, "role": inv.role})
    except IntegrityError:
        raise Conflict("that e-mail address is already a member") from None
    return Member(id=user_id, email=email, name=name, role=inv.role, totp_enabled=False,
                  created_at=now, disabled_at=None)


def _other_owners(account_id: str, user_id: str):  # type: ignore[no-untyped-def]
    """A scalar subquery: how many owners the account has besides `user_id`."""
    others = users.alias("others")
    return (select(func.count()).select_from(others).where(
        others.c.account_id == account_id, others.c.role == Role.OWNER.value,
        others.c.disabled_at.is_(None), others.c.id != user_id).scalar_subquery())


def _target(cells: Cells, caller: Caller, member_id: str):  # type: ignore[no-untyped-def]
    with cells[caller.region].read() as conn:
        row = conn.execute(select(users.c.id, users.c.role).where(
            users.c.id == member_id, users.c.account_id == caller.account_id)).first()
    if row is None:
        raise NotFound(f"member {member_id} not found")
    return row


def _old_role(value: str) -> Role | None:
    try:
        return Role(value)
    except ValueError:
        return None


def change_role(cells: Cells, clock: Clock, caller: Caller, member_id: str,
                role: str) -> Member:
    new = _role(role)
    row = _target(cells, caller, member_id)
    old = _old_role(row.role)
    authorize_role_change(caller.role, old, new, caller.scopes)
    cell = cells[caller.region]
    with cell.write() as conn:
        keeps_owner = new == Role.OWNER or row.role != Role.OWNER.value
        condition = and_(users.c.id == member_id, users.c.account_id == caller.account_id)
        if not keeps_owner:
            condition = and_(condition, _other_owners(caller.account_id, member_id) > 0)
        if conn.execute(update(users).where(condition).values(role=new.value)).rowcount != 1:
            raise Conflict("an account must keep at least one owner")
        by_caller(cell, conn, caller, Action.MEMBER_ROLE_CHANGED, f"user:{member_id}",
                  clock.now(), old=row.role, new=new.value)
    return next(m for m in list_members(cells, caller) if m.id == member_id)


def remove(cells: Cells, clock: Clock, caller: Caller, member_id: str) -> None:
    row = _target(cells, caller, member_id)
    authorize_role_change(caller.role, _old_role(row.role), None, caller.scopes)
    cell = cells[caller.region]
    with cell.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.user_id == member_id))
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == member_id))
        condition = and_(users.c.id == member_id, users.c.account_id == caller.account_id)
        if row.role == Role.OWNER.value:
            condition = and_(condition, _other_owners(caller.account_id, member_id) > 0)
        if conn.execute(delete(users).where(condition)).rowcount != 1:
            raise Conflict("an account must keep at least one owner")
        by_caller(cell, conn, caller, Action.MEMBER_REMOVED, f"user:{member_id}", clock.now(),
                  role=row.role)
