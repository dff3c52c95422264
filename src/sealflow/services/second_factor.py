"""The second factor (I3): TOTP enrolment, confirmation (which hands out the recovery codes
once), removal, and the check a login makes. The secret is sealed (users.totp_secret, bound
to the user's id); the last accepted time step moves by compare-and-set, so a code works
once even when two requests race with it; a recovery code is used by deleting its row.
Failed codes are throttled per member (identity.throttle.TOTP_PER_USER: 5 in 15 minutes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, or_, select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, Issue, NotFound
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import accounts, recovery_codes, users
from sealflow.identity import totp
from sealflow.identity.throttle import TOTP_PER_USER
from sealflow.regions.cells import Cell, Cells
from sealflow.services.accounts import Caller
from sealflow.services.users import (
    Identity,
    LoginThrottled,
    clear_failures,
    decide,
    get_user,
    record_failures,
)

ISSUER = "sealflow"


def require_totp(settings_json: str | None) -> bool:
    """The account's login policy (accounts.settings `login.require_totp`)."""
    try:
        settings = orjson.loads(settings_json) if settings_json else {}
    except orjson.JSONDecodeError:
        return False
    login = settings.get("login") if isinstance(settings, dict) else None
    return isinstance(login, dict) and login.get("require_totp") is True


def account_requires_totp(cell: Cell, account_id: str) -> bool:
    with cell.read() as conn:
        row = conn.execute(select(accounts.c.settings).where(accounts.c.id == account_id)).first()
    return row is not None and require_totp(row.settings)


def _member(caller: Caller) -> str:
    if caller.user_id is None:
        raise Conflict("a second factor belongs to a member: log in (API tokens have none)")
    return caller.user_id


def _load(cell: Cell, caller: Caller) -> Any:
    with cell.read() as conn:
        row = get_user(conn, caller.account_id, _member(caller))
    if row is None:
        raise NotFound("member not found")
    return row


@dataclass(frozen=True)
class Enrolment:
    uri: str
    qr_svg: str


def start(cells: Cells, clock: Clock, caller: Caller) -> Enrolment:
    """A new secret, not yet enabled (confirm enables it). Replaces an unconfirmed one."""
    cell = cells[caller.region]
    row = _load(cell, caller)
    if row.totp_enabled_at is not None:
        raise Conflict("a second factor is already enabled; remove it first")
    secret = totp.new_secret()
    sealed = seal(cell.vault, caller.account_id, users.name, row.id, "totp_secret", secret)
    with cell.write() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(
            totp_secret=sealed, totp_enabled_at=None, totp_last_step=None))
    email = open_(cell.vault, caller.account_id, users.name, row.id, "email", row.email)
    uri = totp.provisioning_uri(secret, email, ISSUER)
    return Enrolment(uri=uri, qr_svg=totp.qr_svg(uri))


def confirm(cells: Cells, clock: Clock, ident: Identity, caller: Caller, code: str) -> list[str]:
    """Enables the second factor once a code from the app checks; returns the recovery codes
    (shown once, stored hashed)."""
    cell = cells[caller.region]
    row = _load(cell, caller)
    if row.totp_enabled_at is not None:
        raise Conflict("a second factor is already enabled")
    if row.totp_secret is None:
        raise Conflict("start the enrolment first (POST /v1/me/totp)")
    if not check(cell, clock, ident, caller.account_id, row.id, code=code):
        raise InvalidInput("wrong code", [Issue("$.code", "is not the app's current code")])
    codes = totp.new_recovery_codes()
    key = ident.derived("recovery codes")
    now = clock.now()
    with cell.write() as conn:
        conn.execute(update(users).where(users.c.id == row.id)
                     .values(totp_enabled_at=now))
        _record_change(cell, conn, caller, row.id, now, "enabled")
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == row.id))
        conn.execute(insert(recovery_codes), [
            {"code_hash": totp.hash_recovery_code(c, pepper=key), "user_id": row.id,
             "account_id": caller.account_id} for c in codes])
    return codes


def disable(cells: Cells, clock: Clock, ident: Identity, caller: Caller, code: str) -> None:
    cell = cells[caller.region]
    row = _load(cell, caller)
    if row.totp_enabled_at is None:
        raise Conflict("no second factor is enabled")
    if account_requires_totp(cell, caller.account_id):
        raise Conflict("the account requires a second factor of every member")
    if not check(cell, clock, ident, caller.account_id, row.id, code=code):
        raise InvalidInput("wrong code", [Issue("$.code", "is not the app's current code")])
    with cell.write() as conn:
        conn.execute(update(users).where(users.c.id == row.id).values(
            totp_secret=None, totp_enabled_at=None, totp_last_step=None))
        conn.execute(delete(recovery_codes).where(recovery_codes.c.user_id == row.id))
        _record_change(cell, conn, caller, row.id, clock.now(), "disabled")


def _record_change(cell: Cell, conn: Connection, caller: Caller, user_id: str, now: datetime,
                   change: str) -> None:
    cell.audit.record(conn, account_id=caller.account_id, actor=caller.actor,
                      action=Action.SECOND_FACTOR_CHANGED, target=f"user:{user_id}", at=now,
                      details={"change": change, "factor": "totp"})


def check(cell: Cell, clock: Clock, ident: Identity, account_id: str, user_id: str, *,
          code: str | None = None, recovery_code: str | None = None,
          client: str | None = None) -> bool:
    """Does `code` (or `recovery_code`) prove the member's second factor, now and once?
    LoginThrottled when too many codes failed lately."""
    key = f"totp:{user_id}"
    now = clock.now()
    with cell.read() as conn:
        decision = decide(conn, TOTP_PER_USER, key, now)
        row = get_user(conn, account_id, user_id)
    if not decision.allowed:
        raise LoginThrottled(decision.retry_after_s)
    ok = False
    if row is not None and row.totp_secret is not None and code is not None:
        secret = open_(cell.vault, account_id, users.name, user_id, "totp_secret",
                       row.totp_secret)
        step = totp.verify(secret, code, now=now, last_step=row.totp_last_step)
        if step is not None:
            with cell.write() as conn:  # compare-and-set: of two racing requests, one wins
                ok = conn.execute(update(users).where(
                    users.c.id == user_id,
                    or_(users.c.totp_last_step.is_(None), users.c.totp_last_step < step),
                ).values(totp_last_step=step)).rowcount == 1
    elif row is not None and recovery_code is not None:
        try:
            hashed = totp.hash_recovery_code(recovery_code,
                                             pepper=ident.derived("recovery codes"))
        except ValueError:
            hashed = None
        if hashed is not None:
            with cell.write() as conn:  # deleting the row uses the code, once
                ok = conn.execute(delete(recovery_codes).where(
                    recovery_codes.c.user_id == user_id,
                    recovery_codes.c.code_hash == hashed)).rowcount == 1
    with cell.write() as conn:
        if ok:
            clear_failures(conn, key)
        else:
            record_failures(conn, [(TOTP_PER_USER, key)], now)
            cell.audit.record(conn, account_id=account_id, actor=Actor(ActorKind.USER, user_id),
                              action=Action.LOGIN_FAILED, target=f"user:{user_id}", at=now,
                              details={"factor": "recovery_code" if recovery_code else "totp",
                                       "client": client})
    return ok
