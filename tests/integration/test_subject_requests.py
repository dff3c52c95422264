"""Data subject requests (D5) through the real application, services and SQLite files, with
an injected clock the tests move (never sleep).

A member is given every kind of personal data sealflow stores (a second factor, sessions, an
API token, an SSO identity, a personal authentication, failed logins, a workflow, audit
entries, an invitation, lines in the server's log files), all carrying generated canary
values. The export must hold every kind (and no secret); after erasure a byte scan of every
database file (cell DB, its WAL, the key store) and every log file finds none of the canaries,
and the audit trail still verifies (`sealflow audit verify`)."""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select

from sealflow.api.access_log import Pseudonymiser, load_or_create_key
from sealflow.api.app import create_app
from sealflow.audit.log import iter_records
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.db import tables
from sealflow.db.tables import sso_identities, users
from sealflow.identity.passwords import PasswordHasher
from sealflow.services import subject_coverage
from sealflow.services.users import Identity, load_or_create_pepper, pepper_file
from tests.support.clock import ManualClock

CANARY_IP = "203.0.113.77"  # TEST-NET-3: the member's address
OTHER_IP = "198.51.100.9"  # the owner's
PASSWORD = "correct horse battery staple"
BASE = "/v1/account/subject-requests"
MANUAL = {"name": "canary flow", "trigger": {"type": "manual"},
          "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}


@dataclass
class World:
    p: Platform
    clock: ManualClock
    data: Path
    account_id: str
    token: str  # the account's first API token (the operator's, acting as owner)
    ident: Identity

    def client(self, ip: str = OTHER_IP) -> TestClient:
        return TestClient(create_app_for(self), base_url="https://testserver", client=(ip, 5000))

    def api(self) -> TestClient:
        c = self.client()
        c.headers["Authorization"] = f"Bearer {self.token}"
        return c

    def pseudonym(self, ip: str) -> str:
        return Pseudonymiser(load_or_create_key(self.p.settings.access_log_key_file()))(ip)


_APPS: dict[int, Any] = {}


def create_app_for(w: World) -> Any:
    if id(w) not in _APPS:
        app = create_app(w.p, run_workers=False)
        app.state.identity = w.ident  # bcrypt cost 4: fast tests, same pepper as the CLI's
        _APPS[id(w)] = app
    return _APPS[id(w)]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def make_world(tmp_path: Path) -> Iterator[World]:
    """An account in a real platform (one SQLite cell), served in-process."""
    clock = ManualClock(datetime(2026, 11, 29, 12, 0, 5, tzinfo=UTC))
    data = tmp_path / "data"
    p = build_platform(Settings(data_dir=data, regions={"us": RegionSettings()}), clock=clock)
    pepper = load_or_create_pepper(pepper_file(data))
    ident = Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)
    from sealflow.services import accounts

    account, token = accounts.create_account(p.cells, clock, name="Acme", region="us")
    w = World(p, clock, data, account.id, token, ident)
    yield w
    _APPS.pop(id(w), None)
    p.cells.dispose()


@dataclass
class Member:
    id: str
    email: str
    name: str
    session: TestClient  # logged in, X-CSRF-Token set


def join(w: World, role: str, *, ip: str = OTHER_IP, tag: str = "") -> Member:
    """Invite, accept and log in a member with canary e-mail and name."""
    suffix = secrets.token_hex(6)
    email = f"canary.{tag}{suffix}@example.test"
    name = f"Zoë Canary{suffix}"
    with w.api() as api:
        r = api.post("/v1/invitations", json={"email": email, "role": role})
        assert r.status_code == 201, r.text
        r = api.post("/v1/invitations/accept",
                     json={"token": r.json()["token"], "name": name, "password": PASSWORD})
        assert r.status_code == 201, r.text
        member_id = r.json()["id"]
    session = w.client(ip)
    r = session.post("/v1/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    session.headers["X-CSRF-Token"] = r.json()["csrf_token"]
    return Member(member_id, email, name, session)


@dataclass
class Canaries:
    member: Member
    api_token: str
    totp_secret: str
    workflow_id: str
    authentication_secret: str
    sealed: list[str]  # the member's sealed e-mail, name and TOTP secret as stored


def give_everything(w: World, owner: Member) -> Canaries:
    """A builder with every kind of personal data sealflow stores."""
    m = join(w, "builder", ip=CANARY_IP, tag="x")
    s = m.session
    wrong = w.client(CANARY_IP).post("/v1/auth/login", json={"email": m.email, "password": "no"})
    assert wrong.status_code == 401
    r = s.post("/v1/me/totp")
    assert r.status_code == 200, r.text
    totp_secret = pyotp.parse_uri(r.json()["otpauth_uri"]).secret
    r = s.post("/v1/me/totp/confirm", json={"code": pyotp.TOTP(totp_secret).at(w.clock.now())})
    assert r.status_code == 200, r.text
    r = s.post("/v1/tokens", json={"name": f"token of {m.name}"})
    assert r.status_code == 201, r.text
    api_token = r.json()["token"]
    r = s.post("/v1/workflows", json={"definition": MANUAL})
    assert r.status_code == 201, r.text
    workflow_id = r.json()["id"]
    auth_secret = "k-" + secrets.token_hex(8)
    r = s.post("/v1/authentications", json={"name": "my own key", "type": "api_key",
                                            "shared": False, "secret": {"key": auth_secret}})
    assert r.status_code == 201, r.text
    # An SSO identity as services.sso records one at the member's first login through the
    # account's provider (the OpenID Connect round trip itself is tests/e2e/test_sso.py's).
    with w.p.cells["us"].write() as conn:
        conn.execute(insert(sso_identities).values(
            account_id=w.account_id, user_id=m.id, created_at=w.clock.now(),
            subject_hash=hashlib.sha256(f"https://idp.test\n{m.id}-sub".encode()).hexdigest()))
    with owner.session as o:  # an audit entry about them by someone else
        r = o.patch(f"/v1/members/{m.id}", json={"role": "builder"})
        assert r.status_code == 200, r.text
    with w.p.cells["us"].read() as conn:
        row = conn.execute(select(users).where(users.c.id == m.id)).one()
    write_logs(w, m)
    return Canaries(m, api_token, totp_secret, workflow_id, auth_secret,
                    [row.email, row.name, row.totp_secret, row.email_hash])


def write_logs(w: World, m: Member) -> None:
    """Server log lines as the JSON-lines log files hold them (structlog's JSON renderer
    escapes non-ASCII): some about the member, some not."""
    logs = w.data / "logs"
    logs.mkdir(exist_ok=True)
    about = [
        {"event": "request", "client": w.pseudonym(CANARY_IP), "path": "/v1/me"},
        {"event": "invited", "email": m.email},
        {"event": "hello", "who": m.name},
        {"event": "member", "user_id": m.id},
        {"event": "raw address", "client_ip": CANARY_IP},
    ]
    other = [{"event": "request", "client": w.pseudonym(OTHER_IP), "path": "/healthz"},
             {"event": "started", "region": "us"}]
    lines = [json.dumps(x) for x in about + other]
    (logs / "sealflow-2026-11-29.jsonl").write_text("\n".join(lines) + "\n")
    (logs / "sealflow-2026-11-28.jsonl").write_text("\n".join(reversed(lines)) + "\n")


def request(w: World, kind: str, email: str, law: str = "gdpr") -> dict[str, Any]:
    with w.api() as api:
        r = api.post(BASE, json={"kind": kind, "law": law, "email": email})
        assert r.status_code == 201, r.text
        return dict(r.json())


def run(w: World, request_id: str, expect: int = 200, **body: Any) -> dict[str, Any]:
    with w.api() as api:
        r = api.post(f"{BASE}/{request_id}/run", json=body or None)
    assert r.status_code == expect, r.text
    return dict(r.json())


def export(w: World, email: str) -> tuple[dict[str, Any], str]:
    made = request(w, "export", email)
    assert run(w, made["id"])["status"] == "completed"
    with w.api() as api:
        r = api.get(f"{BASE}/{made['id']}/export")
    assert r.status_code == 200, r.text
    assert r.headers["content-disposition"].startswith("attachment")
    return r.json(), r.text


def db_files(data: Path) -> list[Path]:
    found = [p for p in data.rglob("*") if p.is_file() and ".db" in p.name]
    names = {p.name for p in found}
    assert {"us.db", "us.keys.db"} <= names, names
    return found


def test_every_table_is_covered_by_the_export_or_said_not_about_a_person() -> None:
    covered, not_personal = set(subject_coverage.COVERAGE), set(subject_coverage.NOT_ABOUT_A_PERSON)
    assert not covered & not_personal
    schema = {t.name: t for t in tables.metadata.sorted_tables}
    unclassified = set(schema) - covered - not_personal
    assert not unclassified, (
        f"tables {sorted(unclassified)}: add them to services.subject_coverage.COVERAGE (and "
        "to the export and the erasure) or to NOT_ABOUT_A_PERSON with the reason")
    assert not (covered | not_personal) - set(schema)
    for name in covered:  # every column of a covered table says how the export shows it
        assert set(subject_coverage.COVERAGE[name]) == set(schema[name].c.keys()), name
    # Any column that names a member or holds an address makes its table personal.
    linking = {"user_id", "owner_id", "invited_by", "email", "staff_user_id", "decided_by"}
    for name, table in schema.items():
        if linking & set(table.c.keys()):
            assert name in covered, name


def test_the_export_holds_every_kind_of_personal_data_and_no_secret(world: World) -> None:
    w = world
    owner = join(w, "owner")
    c = give_everything(w, owner)
    m = c.member
    archive, text = export(w, m.email)

    assert archive["format"] == "sealflow.subject-export" and archive["subject"] == {
        "member_id": m.id}
    data = archive["data"]
    assert set(data) == set(subject_coverage.COVERAGE)
    assert (data["users"]["email"], data["users"]["name"]) == (m.email, m.name)
    assert data["users"]["totp_enabled_at"] and data["users"]["password_set"] is True
    assert data["recovery_codes"]["recovery_codes_left"] == 10
    assert data["accounts"] == [{"account_id": w.account_id, "name": "Acme", "region": "us",
                                 "role": "builder", "since": data["users"]["created_at"]}]
    assert len(data["sessions"]) == 1 and data["sessions"][0]["last_seen_at"]
    assert data["sessions"][0]["client"] == w.pseudonym(CANARY_IP)
    assert [t["name"] for t in data["api_tokens"]] == [f"token of {m.name}"]
    assert len(data["sso_identities"]) == 1
    assert [i["email"] for i in data["invitations"]["to_you"]] == [m.email]
    kinds = {f["kind"] for f in data["login_failures"]}
    assert "password" in kinds and f"from address {w.pseudonym(CANARY_IP)}" in kinds
    assert [a["name"] for a in data["authentications"]] == ["my own key"]
    actions = {r["action"] for r in data["audit_records"]}
    assert {"login.succeeded", "second_factor.changed", "token.created", "workflow.created",
            "member.role_changed", "member.joined"} <= actions, actions
    assert all(r["actor"]["id"] == m.id or r["target"] == f"user:{m.id}"
               for r in data["audit_records"])
    assert [(f["id"], f["you"]) for f in data["workflows"]] == [(c.workflow_id, ["created"])]
    assert [r["kind"] for r in data["subject_requests"]] == ["export"]
    # No secret, and nobody else's data.
    with w.p.cells["us"].read() as conn:
        password_hash = conn.execute(select(users.c.password_hash)
                                     .where(users.c.id == m.id)).scalar_one()
    for secret in (password_hash, c.totp_secret, c.api_token, c.authentication_secret,
                   *c.sealed[:3], owner.email, owner.name, PASSWORD):
        assert secret not in text
    assert hashlib.sha256(c.api_token.encode()).hexdigest() not in text
    # Downloading it is on the audit trail, with the completion.
    with w.api() as api:
        listed = api.get(BASE).json()
    assert listed[0]["status"] == "completed" and listed[0]["outcome"]["sections"]
    exported = [r for r in data["audit_records"] if r["action"] == "data.exported"]
    assert [r["details"]["step"] for r in exported] == ["completed"]


def test_erasure_leaves_no_trace_in_files_and_the_audit_trail_verifies(world: World) -> None:
    w = world
    owner = join(w, "owner")
    c = give_everything(w, owner)
    m = c.member
    made = request(w, "erasure", m.email, law="ccpa")
    done = run(w, made["id"], addresses=[CANARY_IP])  # the person gave it (not needed for
    assert done["status"] == "completed" and done["member_email"] is None  # the pseudonym)
    removed = done["outcome"]["removed"]
    assert {"users": 1, "sessions": 1, "api_tokens": 1, "sso_identities": 1, "invitations": 1,
            "authentications": 1, "recovery_codes": 10}.items() <= removed.items(), removed
    assert removed["login_failures"] >= 2
    assert done["outcome"]["log_lines_removed"] == 10
    assert done["outcome"]["files_compacted"] is True

    # The member is gone: their session and token no longer work, nothing is left to export.
    assert m.session.get("/v1/me").status_code == 401
    assert w.client().get("/v1/account", headers={
        "Authorization": f"Bearer {c.api_token}"}).status_code == 401
    with w.api() as api:
        r = api.post(BASE, json={"kind": "export", "email": m.email})
    assert r.status_code == 404 and "$.email" in r.json()["error"]["message"]

    # The log files keep the other lines only.
    for name in ("sealflow-2026-11-29.jsonl", "sealflow-2026-11-28.jsonl"):
        kept = (w.data / "logs" / name).read_text().splitlines()
        assert sorted(json.loads(x)["event"] for x in kept) == ["request", "started"]

    # The address's pseudonym is left in the audit records alone (the trail is append-only
    # and hash-chained; the member id next to it now maps to no one); no other table has it.
    pseudonym = w.pseudonym(CANARY_IP)
    with w.p.cells["us"].read() as conn:
        for table in tables.metadata.sorted_tables:
            if table.name != "audit_records":
                for row in conn.execute(select(table)):
                    assert pseudonym not in repr(tuple(row)), table.name
    # A byte scan of every database file and log file: no canary left, in any form.
    w.p.cells.dispose()
    canaries = [m.email, m.email.upper(), m.name, json.dumps(m.name)[1:-1], CANARY_IP,
                *c.sealed, c.totp_secret]
    files = db_files(w.data) + sorted((w.data / "logs").glob("*"))
    for path in files:
        blob = path.read_bytes()
        for canary in canaries + ([pseudonym] if path.suffix != ".db" else []):
            assert canary.encode() not in blob, f"{canary!r} found in {path.name}"
    # The audit trail still names the member by id only, and verifies.
    verify = subprocess.run(
        [sys.executable, "-m", "sealflow.cli", "--data-dir", str(w.data), "audit", "verify"],
        capture_output=True, text=True, timeout=120)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "region us: ok" in verify.stdout
    assert m.id.encode() in (w.data / "us.db").read_bytes()  # pseudonymised, not broken


def test_a_restored_backup_does_not_bring_an_erased_member_back(world: World) -> None:
    w = world
    join(w, "owner")
    m = join(w, "builder", tag="restored")
    old = w.data.parent / "before-erasure.db"
    src, dst = sqlite3.connect(w.data / "us.db"), sqlite3.connect(old)
    src.backup(dst)  # a consistent copy, as a backup taken before the erasure holds
    src.close()
    dst.close()
    made = request(w, "erasure", m.email)
    assert run(w, made["id"])["status"] == "completed"
    entries = (w.data / "keys" / "us.erasures").read_text().splitlines()
    assert [json.loads(x)["user_id"] for x in entries] == [m.id]
    assert m.email not in (w.data / "keys" / "us.erasures").read_text()

    w.p.cells.dispose()  # the restore: the old database file back in place
    for suffix in ("-wal", "-shm"):
        (w.data / f"us.db{suffix}").unlink(missing_ok=True)
    old.replace(w.data / "us.db")
    p = build_platform(w.p.settings, clock=w.clock)  # the next start erases them again
    try:
        with p.cells["us"].read() as conn:
            assert conn.execute(select(users).where(users.c.id == m.id)).first() is None
            records = [json.loads(r.record) for r in iter_records(conn)]
        again = [r for r in records if r["action"] == "data.erased"]
        assert [(r["target"], r["actor"]["kind"], r["details"]["step"]) for r in again] == [
            (f"user:{m.id}", "system", "reapplied")]
    finally:
        p.cells.dispose()
    for path in db_files(w.data):
        blob = path.read_bytes()
        assert m.email.encode() not in blob and m.name.encode() not in blob, path.name


def test_sealflow_backup_restore_erases_again_before_anything_reads(world: World) -> None:
    """The same through `backup create` / `backup restore`, without a restart between."""
    from sealflow.audit.records import OPERATOR
    from sealflow.services import backups

    w = world
    join(w, "owner")
    m = join(w, "builder", tag="backup")
    cell = w.p.cells["us"]
    taken = backups.create_backup(w.p.settings, cell, w.clock, actor=OPERATOR)
    made = request(w, "erasure", m.email)
    assert run(w, made["id"])["status"] == "completed"
    cell.close_kept()  # the restore refuses a database this process still holds open
    restored = backups.restore_backup(w.p.settings, cell, w.clock, taken.path, actor=OPERATOR)
    assert restored.region == "us"
    with cell.read() as conn:
        assert conn.execute(select(users).where(users.c.id == m.id)).first() is None
        records = [json.loads(r.record) for r in iter_records(conn)]
    done = [r for r in records if r["action"] == "backup.restored"]
    assert done and done[-1]["details"]["erased_again"] == 1
