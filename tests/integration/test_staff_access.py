"""Staff access grants (SPEC I7), through the real application, SQLite cells and services,
with real logins (password and TOTP) and an injected clock the tests move (never sleep).

A staff member is a member of the operator's own account, put on the staff list by the
operator; customers are two other accounts (A with data, B with other data)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from sealflow.api.app import create_app
from sealflow.audit.log import iter_records
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.db.tables import audit_records
from sealflow.identity import totp
from sealflow.identity.passwords import PasswordHasher
from sealflow.services import (
    accounts,
    executions,
    members,
    second_factor,
    staff_members,
    workflows,
)
from sealflow.services.accounts import Caller
from sealflow.services.staff_access import GRANT_HEADER
from sealflow.services.users import Identity, load_or_create_pepper, pepper_file
from tests.support.clock import ManualClock as Clock

PASSWORD = "correct horse battery staple"
MANUAL = {"name": "manual", "trigger": {"type": "manual"},
          "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}
WHY = "Ticket 4711: the customer reports failed runs of their invoice workflow"


@dataclass(frozen=True)
class Customer:
    account_id: str
    token: str  # the operator's first token: acts as the owner
    workflow_id: str
    execution_id: str


@pytest.fixture
def clock() -> Clock:
    # Five seconds into a TOTP step: this step's code and the next are valid now.
    return Clock(datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC))


@pytest.fixture
def platform(tmp_path: Path, clock: Clock) -> Iterator[Platform]:
    p = build_platform(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                       clock=clock)
    yield p
    p.cells.dispose()


@pytest.fixture
def ident(platform: Platform) -> Identity:
    pepper = load_or_create_pepper(pepper_file(platform.settings.data_dir))
    return Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)


@pytest.fixture
def app(platform: Platform, ident: Identity) -> FastAPI:
    application = create_app(platform, run_workers=False)
    application.state.identity = ident  # cheap bcrypt rounds; the same pepper
    return application


def _client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="https://testserver")


def _customer(p: Platform, name: str) -> Customer:
    account, token = accounts.create_account(p.cells, p.clock, name=name, region="us")
    who = Caller(region="us", account_id=account.id, token_id="operator")
    flow = workflows.create(p.cells, p.clock, p.registry, p.limits, who, MANUAL).workflow
    run = executions.start(p.cells, p.clock, who, flow.id, {"n": 1})
    return Customer(account.id, token, flow.id, run.id)


@pytest.fixture
def acme(platform: Platform) -> Customer:
    return _customer(platform, "Acme")


@pytest.fixture
def globex(platform: Platform) -> Customer:
    return _customer(platform, "Globex")


@pytest.fixture
def ops(platform: Platform) -> Caller:
    """The operator's own account, where staff members are members."""
    account, _ = accounts.create_account(platform.cells, platform.clock, name="Ops",
                                         region="us")
    return Caller(region="us", account_id=account.id, token_id="operator")


def _member(p: Platform, ident: Identity, owner: Caller, email: str, name: str,
            role: str = "viewer") -> Caller:
    inv = members.invite(p.cells, p.clock, ident, owner, email=email, role=role)
    m = members.accept(p.cells, p.clock, ident, token=inv.token, name=name, password=PASSWORD)
    return Caller(region="us", account_id=owner.account_id, token_id="session:x", role=role,
                  user_id=m.id)


def _enrol(p: Platform, clock: Clock, ident: Identity, who: Caller) -> str:
    secret = pyotp.parse_uri(second_factor.start(p.cells, p.clock, who).uri).secret
    second_factor.confirm(p.cells, p.clock, ident, who, _code(secret, clock))
    return secret


def _code(secret: str, clock: Clock, ahead: int = 0) -> str:
    return pyotp.TOTP(secret).generate_otp(totp.time_step(clock.now()) + ahead)


@dataclass
class Session:
    client: TestClient
    csrf: str
    user_id: str

    def get(self, path: str, grant: str | None = None) -> Any:
        return self.client.get(path, headers={GRANT_HEADER: grant} if grant else {})

    def send(self, method: str, path: str, body: Any = None, grant: str | None = None) -> Any:
        headers = {"X-CSRF-Token": self.csrf, **({GRANT_HEADER: grant} if grant else {})}
        return self.client.request(method, path, json=body, headers=headers)

    def ask(self, account_id: str, minutes: int = 60, why: Any = WHY) -> Any:
        return self.send("POST", "/v1/staff/grants", {
            "account_id": account_id, "justification": why, "expires_in_minutes": minutes})


def _login(app: FastAPI, email: str, code: str | None = None) -> Session:
    client = _client(app)
    r = client.post("/v1/auth/login", json={"email": email, "password": PASSWORD,
                                            **({"code": code} if code else {})})
    assert r.status_code == 200, r.text
    return Session(client, r.json()["csrf_token"], r.json()["user_id"])


@pytest.fixture
def staff(platform: Platform, app: FastAPI, clock: Clock, ident: Identity, ops: Caller
          ) -> Session:
    """A staff member with a second factor, signed in with it."""
    who = _member(platform, ident, ops, "grace@ops.example", "Grace Hopper")
    secret = _enrol(platform, clock, ident, who)
    staff_members.add(platform.cells, platform.clock, ident, "grace@ops.example")
    return _login(app, "grace@ops.example", _code(secret, clock, ahead=1))


def _owner(app: FastAPI, c: Customer) -> TestClient:
    client = _client(app)
    client.headers["Authorization"] = f"Bearer {c.token}"
    return client


def _audit(p: Platform, account_id: str, action: str) -> list[dict[str, Any]]:
    with p.cells["us"].read() as conn:
        bodies = [json.loads(r.record) for r in iter_records(conn)]
    return [b for b in bodies if b["account_id"] == account_id and b["action"] == action]


def test_staff_with_a_second_factor_reads_through_a_grant_and_the_customer_sees_each_read(
        platform: Platform, app: FastAPI, staff: Session, acme: Customer, globex: Customer
) -> None:
    # Without a grant, the staff member sees only their own account.
    own = staff.get("/v1/workflows")
    assert own.status_code == 200 and acme.workflow_id not in own.text
    asked = staff.ask(acme.account_id, minutes=24 * 60)  # 24 hours: the most allowed
    assert asked.status_code == 201, asked.text
    grant = asked.json()
    assert (grant["status"], grant["account_id"], grant["justification"]) == (
        "active", acme.account_id, WHY)
    gid = grant["id"]

    listed = staff.get("/v1/workflows", grant=gid)
    assert listed.status_code == 200, listed.text
    assert [w["id"] for w in listed.json()] == [acme.workflow_id]
    assert staff.get(f"/v1/workflows/{acme.workflow_id}", grant=gid).status_code == 200
    run = staff.get(f"/v1/executions/{acme.execution_id}", grant=gid)
    assert run.status_code == 200 and run.json()["id"] == acme.execution_id

    # The customer sees who, why, until when, and every read.
    seen = _owner(app, acme).get("/v1/account/staff-access")
    assert seen.status_code == 200, seen.text
    [shown] = seen.json()
    assert (shown["id"], shown["staff_user_id"], shown["staff_name"], shown["status"]) == (
        gid, staff.user_id, "Grace Hopper", "active")
    assert shown["justification"] == WHY and shown["expires_at"] == grant["expires_at"]
    assert shown["reads_total"] == 3
    assert [(r["method"], r["route"], r["path"]) for r in reversed(shown["reads"])] == [
        ("GET", "/v1/workflows", "/v1/workflows"),
        ("GET", "/v1/workflows/{workflow_id}", f"/v1/workflows/{acme.workflow_id}"),
        ("GET", "/v1/executions/{execution_id}", f"/v1/executions/{acme.execution_id}")]
    # Another customer sees nothing of it.
    assert _owner(app, globex).get("/v1/account/staff-access").json() == []

    # The audit trail of the customer's account: the grant and each read, naming the staff
    # member (Actor STAFF), the grant and the route.
    [granted] = _audit(platform, acme.account_id, "staff.access_granted")
    assert granted["actor"] == {"kind": "staff", "id": staff.user_id}
    assert granted["details"]["grant"] == gid and granted["details"]["status"] == "active"
    used = _audit(platform, acme.account_id, "staff.access_used")
    assert [u["details"]["route"] for u in used] == [
        "GET /v1/workflows", "GET /v1/workflows/{workflow_id}",
        "GET /v1/executions/{execution_id}"]
    assert {u["details"]["grant"] for u in used} == {gid}
    assert all(u["actor"] == {"kind": "staff", "id": staff.user_id} for u in used)
    assert used[2]["target"] == f"GET /v1/executions/{acme.execution_id}"
    # The staff member's own view of the grant.
    mine = staff.get("/v1/staff/grants").json()
    assert [(g["id"], g["reads_total"]) for g in mine] == [(gid, 3)]


def test_a_grant_is_refused_above_24_hours_and_without_a_justification(
        staff: Session, acme: Customer, platform: Platform) -> None:
    too_long = staff.ask(acme.account_id, minutes=24 * 60 + 1)
    assert too_long.status_code == 422
    assert [i["path"] for i in too_long.json()["error"]["issues"]] == ["$.expires_in_minutes"]
    assert "24 hours" in too_long.json()["error"]["issues"][0]["message"]
    for why in ("", "   too short  ", "x" * 1001):
        r = staff.ask(acme.account_id, why=why)
        assert r.status_code == 422, why
        assert [i["path"] for i in r.json()["error"]["issues"]] == ["$.justification"]
    missing = staff.send("POST", "/v1/staff/grants",
                         {"account_id": acme.account_id, "expires_in_minutes": 60})
    assert missing.status_code == 422
    assert [i["path"] for i in missing.json()["error"]["issues"]] == ["$.justification"]
    assert staff.ask(acme.account_id, minutes=0).status_code == 422
    unknown = staff.ask("no-such-account")
    assert unknown.status_code == 404
    assert _audit(platform, acme.account_id, "staff.access_granted") == []


def test_an_expired_grant_is_refused_once_the_clock_moves(
        staff: Session, acme: Customer, clock: Clock, app: FastAPI) -> None:
    gid = staff.ask(acme.account_id, minutes=10).json()["id"]
    assert staff.get("/v1/workflows", grant=gid).status_code == 200
    clock.move(minutes=9, seconds=59)
    assert staff.get("/v1/workflows", grant=gid).status_code == 200
    clock.move(seconds=1)
    late = staff.get("/v1/workflows", grant=gid)
    assert late.status_code == 403
    assert late.json()["error"]["code"] == "staff_grant_refused"
    assert "expired" in late.json()["error"]["message"]
    [shown] = _owner(app, acme).get("/v1/account/staff-access").json()
    assert (shown["status"], shown["reads_total"]) == ("expired", 2)


def test_with_require_approval_a_grant_opens_nothing_until_an_owner_approves(
        staff: Session, acme: Customer, app: FastAPI, platform: Platform) -> None:
    owner = _owner(app, acme)
    set_ = owner.patch("/v1/account/settings", json={"staff": {"require_approval": True}})
    assert set_.status_code == 200, set_.text
    assert set_.json()["staff"] == {"require_approval": True}
    bad = owner.patch("/v1/account/settings", json={"staff": {"require_approval": "yes"}})
    assert bad.status_code == 422

    pending = staff.ask(acme.account_id).json()
    assert pending["status"] == "pending"
    refused = staff.get("/v1/workflows", grant=pending["id"])
    assert refused.status_code == 403 and "pending" in refused.json()["error"]["message"]
    approved = owner.post(f"/v1/account/staff-access/{pending['id']}/approve")
    assert approved.status_code == 200 and approved.json()["status"] == "active"
    assert staff.get("/v1/workflows", grant=pending["id"]).status_code == 200
    assert owner.post(f"/v1/account/staff-access/{pending['id']}/approve").status_code == 409

    # Denied stays denied: no access, and it cannot be approved afterwards.
    other = staff.ask(acme.account_id).json()
    assert owner.post(f"/v1/account/staff-access/{other['id']}/deny").json()["status"] == (
        "denied")
    assert staff.get("/v1/workflows", grant=other["id"]).status_code == 403
    assert owner.post(f"/v1/account/staff-access/{other['id']}/approve").status_code == 409
    assert staff.get("/v1/workflows", grant=other["id"]).status_code == 403

    # Revoked at once.
    assert owner.post(f"/v1/account/staff-access/{pending['id']}/revoke").status_code == 200
    gone = staff.get("/v1/workflows", grant=pending["id"])
    assert gone.status_code == 403 and "revoked" in gone.json()["error"]["message"]

    decisions = [(r["details"].get("decision"), r["action"]) for r in
                 _audit(platform, acme.account_id, "staff.access_granted")
                 + _audit(platform, acme.account_id, "staff.access_revoked")]
    assert sorted(d for d in decisions if d[0]) == [
        ("approved", "staff.access_granted"), ("denied", "staff.access_revoked"),
        ("revoked", "staff.access_revoked")]


def test_staff_without_a_second_factor_or_with_a_token_are_refused(
        platform: Platform, app: FastAPI, ident: Identity, ops: Caller, staff: Session,
        acme: Customer) -> None:
    _member(platform, ident, ops, "linus@ops.example", "Linus")
    staff_members.add(platform.cells, platform.clock, ident, "linus@ops.example")
    plain = _login(app, "linus@ops.example")  # password only: no second factor enrolled
    r = plain.ask(acme.account_id)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "staff_second_factor_required"
    assert "second factor" in r.json()["error"]["message"]
    assert plain.get("/v1/staff/grants").status_code == 403
    # A grant of another staff member is not theirs.
    gid = staff.ask(acme.account_id).json()["id"]
    assert plain.get("/v1/workflows", grant=gid).status_code == 403
    # An API token of a staff member with a second factor is not a second factor.
    made = staff.send("POST", "/v1/tokens", {"name": "t"})
    assert made.status_code == 201, made.text
    token_client = _client(app)
    token_client.headers["Authorization"] = f"Bearer {made.json()['token']}"
    by_token = token_client.get("/v1/workflows", headers={GRANT_HEADER: gid})
    assert by_token.status_code == 403
    assert by_token.json()["error"]["code"] == "staff_second_factor_required"


def test_a_grant_only_reads_and_only_its_own_account(
        staff: Session, acme: Customer, globex: Customer, platform: Platform) -> None:
    gid = staff.ask(acme.account_id).json()["id"]
    write = staff.send("POST", "/v1/workflows", {"definition": MANUAL}, grant=gid)
    assert write.status_code == 403 and write.json()["error"]["code"] == "staff_grant_refused"
    for method, path in (("DELETE", f"/v1/workflows/{acme.workflow_id}"),
                         ("POST", f"/v1/executions/{acme.execution_id}/cancel"),
                         ("PATCH", "/v1/account/settings")):
        assert staff.send(method, path, {}, grant=gid).status_code == 403, path
    # Reads beyond a viewer's data (its own tokens, the audit trail) are refused too.
    for path in ("/v1/tokens", "/v1/account/staff-access"):
        r = staff.get(path, grant=gid)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden", path
    # A grant caller is not staff: it cannot open another grant.
    assert staff.send("POST", "/v1/staff/grants", {
        "account_id": globex.account_id, "justification": WHY, "expires_in_minutes": 5},
        grant=gid).status_code == 403
    # Account B's things are not found through A's grant; A's list has none of them.
    assert staff.get(f"/v1/workflows/{globex.workflow_id}", grant=gid).status_code == 404
    assert staff.get(f"/v1/executions/{globex.execution_id}", grant=gid).status_code == 404
    listed = staff.get("/v1/workflows", grant=gid)
    assert globex.workflow_id not in listed.text and acme.workflow_id in listed.text
    assert staff.get("/v1/workflows", grant="us_not-a-grant").status_code == 403
    assert staff.get("/v1/workflows", grant="mars_x").status_code == 403
    with platform.cells["us"].read() as conn:
        accounts_named = set(conn.execute(select(audit_records.c.account)).scalars())
    assert globex.account_id in accounts_named  # its creation, nothing of staff
    assert _audit(platform, globex.account_id, "staff.access_used") == []


def test_members_who_are_not_staff_cannot_ask_for_grants(
        platform: Platform, app: FastAPI, clock: Clock, ident: Identity, acme: Customer,
        globex: Customer) -> None:
    owner = Caller(region="us", account_id=acme.account_id, token_id="operator")
    who = _member(platform, ident, owner, "ada@acme.example", "Ada", role="owner")
    secret = _enrol(platform, clock, ident, who)
    ada = _login(app, "ada@acme.example", _code(secret, clock, ahead=1))
    r = ada.ask(globex.account_id)
    assert r.status_code == 403
    assert (r.json()["error"]["code"], r.json()["error"]["permission"]) == (
        "forbidden", "staff.access")
    assert ada.get("/v1/staff/grants").status_code == 403
    by_operator_token = _owner(app, acme).post("/v1/staff/grants", json={
        "account_id": globex.account_id, "justification": WHY, "expires_in_minutes": 5})
    assert by_operator_token.status_code == 403


def test_removing_a_staff_member_stops_their_grants(
        staff: Session, acme: Customer, platform: Platform, ident: Identity) -> None:
    gid = staff.ask(acme.account_id).json()["id"]
    assert staff.get("/v1/workflows", grant=gid).status_code == 200
    staff_members.remove(platform.cells, platform.clock, ident, "grace@ops.example")
    assert staff.get("/v1/workflows", grant=gid).status_code == 403
    assert staff.get("/v1/staff/grants").status_code == 403


def test_only_owners_turn_approval_off_and_approve(
        platform: Platform, app: FastAPI, ident: Identity, acme: Customer, clock: Clock,
        staff: Session) -> None:
    owner = Caller(region="us", account_id=acme.account_id, token_id="operator")
    who = _member(platform, ident, owner, "adam@acme.example", "Adam", role="admin")
    admin = _login(app, "adam@acme.example")
    r = admin.send("PATCH", "/v1/account/settings", {"staff": {"require_approval": False}})
    assert r.status_code == 403 and r.json()["error"]["permission"] == "staff_grants.manage"
    gid = staff.ask(acme.account_id).json()["id"]
    assert admin.get("/v1/account/staff-access").status_code == 200  # audit.read: admins
    revoke = admin.send("POST", f"/v1/account/staff-access/{gid}/revoke")
    assert revoke.status_code == 403 and who.role == "admin"


def test_a_read_that_cannot_be_recorded_is_not_answered(
        staff: Session, acme: Customer, platform: Platform, app: FastAPI) -> None:
    """Fail closed (A2): the audit trail refuses writes (a real SQLite trigger), so the read
    under the grant fails and answers none of the customer's data."""
    gid = staff.ask(acme.account_id).json()["id"]
    with platform.cells["us"].write() as conn:
        conn.exec_driver_sql("CREATE TRIGGER audit_down BEFORE INSERT ON audit_records "
                             "BEGIN SELECT RAISE(ABORT, 'audit trail unavailable'); END")
    quiet = TestClient(app, base_url="https://testserver", raise_server_exceptions=False)
    quiet.cookies = staff.client.cookies
    r = quiet.get(f"/v1/workflows/{acme.workflow_id}", headers={GRANT_HEADER: gid})
    assert r.status_code in (500, 503)  # 503: the audit trail names itself unavailable
    assert acme.workflow_id not in r.text and "manual" not in r.text
    with platform.cells["us"].write() as conn:
        conn.exec_driver_sql("DROP TRIGGER audit_down")
    [shown] = _owner(app, acme).get("/v1/account/staff-access").json()
    assert shown["reads_total"] == 0  # the read's row rolled back with its audit record
