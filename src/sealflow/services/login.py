"""Password login (I2, I3, I6): e-mail and password, then the second factor when the member
has one, then a new session.

Answers never tell an unknown e-mail from a wrong password: the same error, and the same
work (PasswordHasher.dummy_verify); an unknown e-mail is even throttled like a member (its
failures are kept under a keyed hash of the address). Failures are throttled per member and
per client address (pseudonymised by the caller): past 10 failures in 15 minutes the member
is locked out for 15 minutes, the right password included."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update

from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, SealflowError
from sealflow.db.tables import accounts, users
from sealflow.identity.throttle import PASSWORD_PER_IP, PASSWORD_PER_USER, strictest
from sealflow.monitoring.metrics import metrics
from sealflow.regions.cells import Cells
from sealflow.services import second_factor, sessions, sso
from sealflow.services.accounts import Unauthenticated
from sealflow.services.users import (
    Identity,
    LoginThrottled,
    clear_failures,
    decide,
    email_hash,
    find_by_email,
    record_failures,
)

WRONG = "wrong e-mail or password"


class SecondFactorRequired(SealflowError):
    """The password was right; the member's second-factor code is needed too (HTTP 401)."""

    code = "second_factor_required"


@dataclass(frozen=True)
class LoginResult:
    session: sessions.NewSession
    region: str
    account_id: str
    user_id: str
    role: str
    # The account requires a second factor and this member has none yet: the session may
    # only enrol one (and read /v1/me, log out) until it is confirmed.
    totp_enrolment_required: bool


def _find(cells: Cells, ident: Identity, email: str, region: str | None) -> tuple[str, Any]:
    if region is not None and region not in set(cells):
        raise InvalidInput("invalid login",
                           [Issue("$.region", f"not served here ({', '.join(cells)})")])
    regions = [region] if region is not None else list(cells)
    for r in regions:
        with cells[r].read() as conn:
            row = find_by_email(conn, ident, email)
        if row is not None:
            return r, row
    return regions[0], None


def login(cells: Cells, clock: Clock, ident: Identity, *, email: str, password: str,
          client: str, region: str | None = None, code: str | None = None,
          recovery_code: str | None = None) -> LoginResult:
    """`client`: the pseudonym of the client's address (throttled too)."""
    where, row = _find(cells, ident, email, region)
    cell = cells[where]
    if row is not None:
        user_key = f"user:{row.id}"
    else:
        user_key = f"email:{email_hash(ident, email)[:40]}"
    ip_key = f"ip:{client}"
    now = clock.now()
    with cell.read() as conn:
        decision = strictest(decide(conn, PASSWORD_PER_USER, user_key, now),
                             decide(conn, PASSWORD_PER_IP, ip_key, now))
    if not decision.allowed:
        raise LoginThrottled(decision.retry_after_s)
    if row is None:
        ident.hasher.dummy_verify(password)
        ok = rehash = False
    else:
        verified = ident.hasher.verify(password, row.password_hash)
        ok = verified.ok and row.disabled_at is None
        rehash = verified.ok and verified.needs_rehash
    if not ok:
        with cell.write() as conn:
            record_failures(conn, [(PASSWORD_PER_USER, user_key), (PASSWORD_PER_IP, ip_key)],
                            now)
            # An unknown e-mail appears only as its keyed hash (the throttle's key).
            cell.audit.record(
                conn, account_id=None if row is None else row.account_id,
                actor=(Actor(ActorKind.ANONYMOUS, user_key) if row is None
                       else Actor(ActorKind.USER, row.id)),
                action=Action.LOGIN_FAILED, target=user_key, at=now,
                details={"factor": "password", "client": client})
        metrics().login_failures.labels("password").inc()
        raise Unauthenticated(WRONG)
    # SSO required (I4): only a right password learns it, so it tells nothing about who is
    # a member.
    with cell.read() as conn:
        if sso.required(conn, row.account_id):
            raise sso.refuse_password(row.account_id)
    if rehash:
        with cell.write() as conn:
            conn.execute(update(users).where(users.c.id == row.id)
                         .values(password_hash=ident.hasher.hash(password)))
    if row.totp_enabled_at is not None:
        if not code and not recovery_code:
            raise SecondFactorRequired("the member's second-factor code is required "
                                       "(code, or recovery_code)")
        if not second_factor.check(cell, clock, ident, row.account_id, row.id, code=code,
                                   recovery_code=recovery_code, client=client):
            metrics().login_failures.labels("second_factor").inc()
            raise Unauthenticated("wrong second-factor code")
        method = "password+totp" if code else "password+recovery_code"
    else:
        method = "password"
    with cell.write() as conn:
        clear_failures(conn, user_key)
        settings = conn.execute(select(accounts.c.settings)
                                .where(accounts.c.id == row.account_id)).scalar()
    session = sessions.create(cells, clock, ident, region=where, account_id=row.account_id,
                              user_id=row.id, method=method, client=client)
    return LoginResult(
        session=session, region=where, account_id=row.account_id, user_id=row.id,
        role=row.role,
        totp_enrolment_required=(row.totp_enabled_at is None
                                 and second_factor.require_totp(settings)),
    )
