"""Members, logins, sessions and the second factor at the service level, over a real SQLite
cell, with an injected clock that the tests move (never sleep)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest

from sealflow.bootstrap import build_cells, migrate_all
from sealflow.config import RegionSettings, Settings
from sealflow.core.errors import Conflict, InvalidInput
from sealflow.identity import totp
from sealflow.identity.passwords import PasswordHasher
from sealflow.identity.permissions import Forbidden
from sealflow.regions.cells import Cells
from sealflow.services import accounts, login, members, second_factor, sessions
from sealflow.services.accounts import Caller, Unauthenticated
from sealflow.services.users import Identity, LoginThrottled, load_or_create_pepper
from tests.support.clock import ManualClock as Clock

PASSWORD = "correct horse battery staple"


@pytest.fixture
def clock() -> Clock:
    # Five seconds into a TOTP step: codes of this step and the next are valid now.
    return Clock(datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC))


@pytest.fixture
def cells(tmp_path: Path, clock: Clock) -> Iterator[Cells]:
    c = build_cells(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                    clock)
    migrate_all(c)
    yield c
    c.dispose()


@pytest.fixture
def ident(tmp_path: Path) -> Identity:
    pepper = load_or_create_pepper(tmp_path / "data" / "keys" / "pepper.key")
    return Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)


@pytest.fixture
def owner(cells: Cells, clock: Clock) -> Caller:
    account, _ = accounts.create_account(cells, clock, name="Acme", region="us")
    return Caller(region="us", account_id=account.id, token_id="t")


def add_member(cells: Cells, clock: Clock, ident: Identity, owner: Caller, email: str,
               role: str = "owner", password: str = PASSWORD) -> members.Member:
    inv = members.invite(cells, clock, ident, owner, email=email, role=role)
    return members.accept(cells, clock, ident, token=inv.token, name="Ada", password=password)


def do_login(cells: Cells, clock: Clock, ident: Identity, email: str, password: str = PASSWORD,
             **kw: str) -> login.LoginResult:
    return login.login(cells, clock, ident, email=email, password=password, client="ip_1", **kw)


def test_the_pepper_file_is_private_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "k" / "pepper.key"
    first = load_or_create_pepper(path)
    assert len(first) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_pepper(path) == first


def test_login_gives_a_new_session_each_time_and_logout_ends_it(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    add_member(cells, clock, ident, owner, "Ada@Example.com")
    first = do_login(cells, clock, ident, "ada@example.com")
    second = do_login(cells, clock, ident, " ADA@example.com ")
    assert first.session.token != second.session.token
    assert first.session.csrf_token != second.session.csrf_token
    user = sessions.resolve(cells, clock, ident, first.session.token)
    assert (user.role, user.account_id) == ("owner", owner.account_id)
    assert sessions.csrf_ok(first.session.token, first.session.csrf_token)
    assert not sessions.csrf_ok(first.session.token, second.session.csrf_token)
    assert not sessions.csrf_ok(first.session.token, None)
    sessions.revoke(cells, clock, first.session.token)
    with pytest.raises(Unauthenticated):
        sessions.resolve(cells, clock, ident, first.session.token)
    sessions.resolve(cells, clock, ident, second.session.token)  # the other one lives
    assert sessions.revoke_all(cells, clock, region="us", account_id=owner.account_id,
                               user_id=user.user_id) == 1
    with pytest.raises(Unauthenticated):
        sessions.resolve(cells, clock, ident, second.session.token)
    for bad in ("", "us_nothing", "zz_x", "nounderscore"):
        with pytest.raises(Unauthenticated):
            sessions.resolve(cells, clock, ident, bad)


def test_a_session_ends_when_idle_for_30_minutes(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    add_member(cells, clock, ident, owner, "ada@example.com")
    token = do_login(cells, clock, ident, "ada@example.com").session.token
    clock.move(minutes=29)
    sessions.resolve(cells, clock, ident, token)  # used: the idle time starts again
    clock.move(minutes=29)
    sessions.resolve(cells, clock, ident, token)
    clock.move(minutes=30)
    with pytest.raises(Unauthenticated):
        sessions.resolve(cells, clock, ident, token)


def test_a_session_ends_12_hours_after_its_login_however_used(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    add_member(cells, clock, ident, owner, "ada@example.com")
    token = do_login(cells, clock, ident, "ada@example.com").session.token
    for _ in range(12 * 3 - 1):
        clock.move(minutes=20)
        sessions.resolve(cells, clock, ident, token)
    clock.move(minutes=20)  # 12 h exactly
    with pytest.raises(Unauthenticated):
        sessions.resolve(cells, clock, ident, token)


def test_wrong_password_and_unknown_email_answer_alike(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    add_member(cells, clock, ident, owner, "ada@example.com")
    with pytest.raises(Unauthenticated) as wrong:
        do_login(cells, clock, ident, "ada@example.com", "not the password at all")
    with pytest.raises(Unauthenticated) as unknown:
        do_login(cells, clock, ident, "nobody@example.com", "not the password at all")
    assert str(wrong.value) == str(unknown.value) == login.WRONG


def _fail(cells: Cells, clock: Clock, ident: Identity, email: str) -> None:
    """One wrong password, waiting out the backoff first (moving the clock)."""
    while True:
        try:
            do_login(cells, clock, ident, email, "wrong password, again")
        except LoginThrottled as throttled:
            clock.move(seconds=throttled.retry_after_s)
            continue
        except Unauthenticated:
            return


def test_the_eleventh_attempt_after_ten_wrong_passwords_is_locked_out_then_unlocked(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    add_member(cells, clock, ident, owner, "ada@example.com")
    for _ in range(10):
        _fail(cells, clock, ident, "ada@example.com")
    tenth = clock.now()
    clock.move(minutes=2)  # well past any backoff: what remains is the lockout
    with pytest.raises(LoginThrottled) as locked:  # the right password, refused
        do_login(cells, clock, ident, "ada@example.com")
    assert locked.value.retry_after_s == pytest.approx(13 * 60)
    clock.t = tenth + timedelta(minutes=15)
    assert do_login(cells, clock, ident, "ada@example.com").role == "owner"
    # A success forgets the member's failures: the next wrong password is not throttled.
    with pytest.raises(Unauthenticated):
        do_login(cells, clock, ident, "ada@example.com", "wrong password, again")


def test_unknown_emails_are_throttled_like_members(
        cells: Cells, clock: Clock, ident: Identity) -> None:
    for _ in range(10):
        _fail(cells, clock, ident, "ghost@example.com")
    clock.move(minutes=2)
    with pytest.raises(LoginThrottled):
        do_login(cells, clock, ident, "ghost@example.com")


def _enrol(cells: Cells, clock: Clock, ident: Identity, who: Caller) -> tuple[str, list[str]]:
    enrolment = second_factor.start(cells, clock, who)
    assert enrolment.uri.startswith("otpauth://totp/") and "<svg" in enrolment.qr_svg
    secret = pyotp.parse_uri(enrolment.uri).secret
    now_step = totp.time_step(clock.now())
    codes = second_factor.confirm(cells, clock, ident, who, code_at(secret, now_step))
    return secret, codes


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret).generate_otp(step)


def test_totp_login_a_code_works_once_even_when_two_requests_race(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    member = add_member(cells, clock, ident, owner, "ada@example.com")
    me = Caller(region="us", account_id=owner.account_id, token_id="s", user_id=member.id)
    secret, recovery = _enrol(cells, clock, ident, me)
    assert len(recovery) == 10
    with pytest.raises(login.SecondFactorRequired):
        do_login(cells, clock, ident, "ada@example.com")

    step = totp.time_step(clock.now()) + 1  # the confirm used this step's code
    code = code_at(secret, step)
    results: list[bool] = []
    barrier = threading.Barrier(2)

    def attempt() -> None:
        barrier.wait()
        results.append(second_factor.check(cells["us"], clock, ident, owner.account_id,
                                           member.id, code=code))

    threads = [threading.Thread(target=attempt) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, True]
    with pytest.raises(Unauthenticated):  # replayed later: refused
        do_login(cells, clock, ident, "ada@example.com", code=code)

    clock.move(seconds=30)
    fresh = code_at(secret, totp.time_step(clock.now()) + 1)
    assert do_login(cells, clock, ident, "ada@example.com", code=fresh).user_id == member.id
    # A recovery code works once.
    assert do_login(cells, clock, ident, "ada@example.com", recovery_code=recovery[0])
    with pytest.raises(Unauthenticated):
        do_login(cells, clock, ident, "ada@example.com", recovery_code=recovery[0])


def test_at_most_five_wrong_codes_in_15_minutes(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    member = add_member(cells, clock, ident, owner, "ada@example.com")
    me = Caller(region="us", account_id=owner.account_id, token_id="s", user_id=member.id)
    secret, _ = _enrol(cells, clock, ident, me)
    cell = cells["us"]
    failures = 0
    while failures < 5:
        try:
            assert not second_factor.check(cell, clock, ident, owner.account_id, member.id,
                                           code="000000")
            failures += 1
        except LoginThrottled as throttled:
            clock.move(seconds=throttled.retry_after_s)
    clock.move(minutes=2)
    right = code_at(secret, totp.time_step(clock.now()))
    with pytest.raises(LoginThrottled):
        second_factor.check(cell, clock, ident, owner.account_id, member.id, code=right)


def test_removing_totp_needs_a_code_and_is_refused_when_the_account_requires_it(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    from sealflow.services import account_settings

    member = add_member(cells, clock, ident, owner, "ada@example.com")
    me = Caller(region="us", account_id=owner.account_id, token_id="s", user_id=member.id)
    secret, _ = _enrol(cells, clock, ident, me)
    with pytest.raises(InvalidInput):
        account_settings.change(cells, clock, owner, {"login": {"require_totp": "yes"}})
    account_settings.change(cells, clock, owner, {"login": {"require_totp": True}})
    clock.move(seconds=30)
    with pytest.raises(Conflict):
        second_factor.disable(cells, clock, ident, me, code_at(secret, totp.time_step(clock.now())))
    account_settings.change(cells, clock, owner, {"login": {"require_totp": False}})
    second_factor.disable(cells, clock, ident, me, code_at(secret, totp.time_step(clock.now())))
    assert do_login(cells, clock, ident, "ada@example.com").user_id == member.id


def test_the_last_owner_cannot_be_demoted_or_removed(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    ada = add_member(cells, clock, ident, owner, "ada@example.com")
    with pytest.raises(Conflict):
        members.change_role(cells, clock, owner, ada.id, "admin")
    with pytest.raises(Conflict):
        members.remove(cells, clock, owner, ada.id)
    bob = add_member(cells, clock, ident, owner, "bob@example.com", role="admin")
    as_bob = Caller(region="us", account_id=owner.account_id, token_id="s", role="admin",
                    user_id=bob.id)
    with pytest.raises(Forbidden):  # an admin does not manage owners
        members.change_role(cells, clock, as_bob, ada.id, "viewer")
    with pytest.raises(Forbidden):
        members.invite(cells, clock, ident, as_bob, email="eve@example.com", role="owner")
    assert members.change_role(cells, clock, owner, bob.id, "owner").role == "owner"
    assert members.change_role(cells, clock, owner, ada.id, "viewer").role == "viewer"
    members.remove(cells, clock, owner, ada.id)
    assert [m.email for m in members.list_members(cells, owner)] == ["bob@example.com"]


def test_an_invitation_works_once_before_it_expires_and_applies_the_password_policy(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    inv = members.invite(cells, clock, ident, owner, email="ada@example.com", role="builder")
    with pytest.raises(InvalidInput):
        members.accept(cells, clock, ident, token=inv.token, name="Ada", password="password123")
    with pytest.raises(InvalidInput):
        members.accept(cells, clock, ident, token=inv.token, name="Ada",
                       password="ada@example.com")
    members.accept(cells, clock, ident, token=inv.token, name="Ada", password=PASSWORD)
    with pytest.raises(Unauthenticated):
        members.accept(cells, clock, ident, token=inv.token, name="Ada", password=PASSWORD)
    with pytest.raises(Conflict):
        members.invite(cells, clock, ident, owner, email="ADA@example.com", role="viewer")
    late = members.invite(cells, clock, ident, owner, email="bob@example.com", role="viewer")
    clock.move(days=7)
    with pytest.raises(Unauthenticated):
        members.accept(cells, clock, ident, token=late.token, name="Bob", password=PASSWORD)
    with pytest.raises(InvalidInput):
        members.invite(cells, clock, ident, owner, email="not an address", role="viewer")


def test_nothing_personal_of_a_member_is_stored_in_clear(
        cells: Cells, clock: Clock, ident: Identity, owner: Caller) -> None:
    from sqlalchemy import select

    from sealflow.db.tables import invitations, users

    add_member(cells, clock, ident, owner, "Ada.Lovelace@Example.com")
    with cells["us"].read() as conn:
        row = conn.execute(select(users)).one()
        invitation = conn.execute(select(invitations)).one()
    stored = " ".join(str(v) for v in (*row, *invitation)).lower()
    assert "lovelace" not in stored and "example.com" not in stored
    assert [m.email for m in members.list_members(cells, owner)] == ["ada.lovelace@example.com"]
