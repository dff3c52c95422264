"""Every event kind of the audit catalogue is written by its action (A1), in the action's own
transaction (A2: when the record cannot be written, the action does not happen), and the
account's trail reads back through the customer API with filters, export and proofs.

Through the real application (FastAPI's TestClient running the app's lifespan, so the
embedded queue runs executions), a real SQLite cell and a local HTTP target on 127.0.0.1.
Kinds whose actions are built elsewhere are checked by those modules' tests (listed in
ELSEWHERE, and the last test makes sure each of them really looks for its kind)."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyotp
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from sealflow.api.app import create_app
from sealflow.audit import log, merkle
from sealflow.audit.canonical import canonical
from sealflow.audit.records import Action
from sealflow.audit.signing import Verifier
from sealflow.audit.verify import verify
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.db.tables import workflows
from sealflow.identity.passwords import PasswordHasher
from sealflow.services import accounts, keys
from sealflow.services.users import Identity, load_or_create_pepper, pepper_file
from tests.support.target import Target, start_target

PASSWORD = "correct horse battery staple"
CANARY_KEY = "canary-key-5f1d0c0e9a"  # a generated test value, never a real secret
SEEN: set[Action] = set()  # the kinds this module saw written by their action


@pytest.fixture
def target() -> Iterator[Target]:
    t = start_target()
    yield t
    t.close()


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[Platform]:
    settings = Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()},
                        ssrf_allow=("127.0.0.1/32",))
    p = build_platform(settings)
    yield p
    p.cells.dispose()


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    app = create_app(platform)
    pepper = load_or_create_pepper(pepper_file(platform.settings.data_dir))
    app.state.identity = Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)
    with TestClient(app, base_url="https://testserver") as c:
        yield c


@pytest.fixture
def account(platform: Platform) -> tuple[str, str]:
    made, token = accounts.create_account(platform.cells, platform.clock, name="Acme",
                                          region="us")
    return made.id, token


def records(p: Platform, action: Action | None = None) -> list[dict[str, Any]]:
    with p.cells["us"].read() as conn:
        out = [json.loads(r.record) for r in log.iter_records(conn)]
    found = [r for r in out if action is None or r["action"] == action.value]
    if action is not None and found:
        SEEN.add(action)
    return found


def only(p: Platform, action: Action) -> dict[str, Any]:
    found = records(p, action)
    assert len(found) == 1, (action, found)
    return found[0]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def member(c: TestClient, token: str, email: str, role: str = "owner") -> str:
    r = c.post("/v1/invitations", json={"email": email, "role": role}, headers=bearer(token))
    assert r.status_code == 201, r.text
    r = c.post("/v1/invitations/accept",
               json={"token": r.json()["token"], "name": "Ada", "password": PASSWORD})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def login(c: TestClient, email: str, **extra: str) -> dict[str, str]:
    r = c.post("/v1/auth/login", json={"email": email, "password": PASSWORD, **extra})
    assert r.status_code == 200, r.text
    return {"X-CSRF-Token": r.json()["csrf_token"]}


def test_logins_sessions_and_second_factor(platform: Platform, client: TestClient,
                                           account: tuple[str, str]) -> None:
    account_id, token = account
    user_id = member(client, token, "ada@example.com")
    invited = only(platform, Action.MEMBER_INVITED)
    joined = only(platform, Action.MEMBER_JOINED)
    assert invited["account_id"] == account_id and invited["details"]["role"] == "owner"
    assert joined["actor"] == {"kind": "user", "id": user_id}

    assert client.post("/v1/auth/login", json={"email": "ada@example.com",
                                               "password": "wrong password!"}).status_code == 401
    assert client.post("/v1/auth/login", json={"email": "nobody@example.com",
                                               "password": "wrong password!"}).status_code == 401
    known, unknown = records(platform, Action.LOGIN_FAILED)
    assert known["actor"] == {"kind": "user", "id": user_id} and known["account_id"] == account_id
    assert known["details"]["factor"] == "password"
    assert known["details"]["client"].startswith("ip_")  # pseudonymised, never the address
    assert unknown["account_id"] is None and unknown["actor"]["kind"] == "anonymous"
    assert "nobody" not in json.dumps(unknown)  # an unknown e-mail only as its keyed hash

    csrf = login(client, "ada@example.com")
    ok = only(platform, Action.LOGIN_SUCCEEDED)
    assert ok["details"]["method"] == "password" and ok["target"] == f"user:{user_id}"

    start = client.post("/v1/me/totp", headers=csrf)
    assert start.status_code == 200, start.text
    otp = pyotp.TOTP(pyotp.parse_uri(start.json()["otpauth_uri"]).secret)
    r = client.post("/v1/me/totp/confirm", json={"code": otp.now()}, headers=csrf)
    assert r.status_code == 200, r.text
    assert only(platform, Action.SECOND_FACTOR_CHANGED)["details"]["change"] == "enabled"

    assert client.post("/v1/auth/logout", headers=csrf).status_code == 200
    assert only(platform, Action.LOGOUT)["actor"]["id"] == user_id

    r = client.post("/v1/auth/login", json={"email": "ada@example.com", "password": PASSWORD,
                                            "code": "000000"})
    assert r.status_code == 401
    assert records(platform, Action.LOGIN_FAILED)[-1]["details"]["factor"] == "totp"
    # The code the confirmation used is spent: log in with the next one.
    csrf = login(client, "ada@example.com", code=otp.at(datetime.now(UTC) + timedelta(seconds=otp.interval)))
    assert records(platform, Action.LOGIN_SUCCEEDED)[-1]["details"]["method"] == "password+totp"
    assert client.post("/v1/auth/logout-all", headers=csrf).status_code == 200
    assert only(platform, Action.SESSION_REVOKED)["details"]["scope"] == "everywhere"


def test_tokens_members_and_settings(platform: Platform, client: TestClient,
                                     account: tuple[str, str]) -> None:
    _, token = account
    r = client.post("/v1/tokens", json={"name": "ci", "scopes": ["workflows.read"]},
                    headers=bearer(token))
    assert r.status_code == 201, r.text
    made = only(platform, Action.TOKEN_CREATED)
    assert made["target"] == f"token:{r.json()['id']}"
    assert made["details"]["scopes"] == ["workflows.read"]
    assert r.json()["token"] not in json.dumps(records(platform))  # the token is never kept
    assert client.delete(f"/v1/tokens/{r.json()['id']}", headers=bearer(token)).status_code == 204
    assert only(platform, Action.TOKEN_REVOKED)["target"] == made["target"]

    bob = member(client, token, "bob@example.com", role="viewer")
    r = client.patch(f"/v1/members/{bob}", json={"role": "builder"}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert only(platform, Action.MEMBER_ROLE_CHANGED)["details"] == {
        "old": "viewer", "new": "builder", "via": only(platform, Action.TOKEN_CREATED)[
            "details"]["via"]}
    assert client.delete(f"/v1/members/{bob}", headers=bearer(token)).status_code == 204
    assert only(platform, Action.MEMBER_REMOVED)["target"] == f"user:{bob}"

    r = client.patch("/v1/account/settings", json={"login": {"require_totp": True}},
                     headers=bearer(token))
    assert r.status_code == 200, r.text
    changed = only(platform, Action.SETTINGS_CHANGED)
    assert changed["details"]["sections"] == ["login"]


def test_an_operator_token_is_on_the_customer_trail(platform: Platform,
                                                    account: tuple[str, str]) -> None:
    account_id, _ = account
    token = accounts.issue_token(platform.cells, platform.clock, region="us",
                                 account_id=account_id, name="support", expires_in_days=1)
    made = only(platform, Action.TOKEN_CREATED)
    assert made["actor"] == {"kind": "operator", "id": "cli"} and made["account_id"] == account_id
    assert made["details"]["role"] == "owner" and token not in json.dumps(made)


def test_workflows_authentications_decryptions_and_reads(
        platform: Platform, client: TestClient, account: tuple[str, str],
        target: Target) -> None:
    _, token = account
    r = client.post("/v1/authentications", headers=bearer(token), json={
        "name": "svc", "type": "api_key", "shared": True,
        "settings": {"in": "header", "param": "X-Api-Key", "test_url": f"{target.url}/ping"},
        "secret": {"key": CANARY_KEY}})
    assert r.status_code == 201, r.text
    auth_id = r.json()["id"]
    assert only(platform, Action.AUTHENTICATION_CREATED)["details"]["type"] == "api_key"
    r = client.patch(f"/v1/authentications/{auth_id}", json={"name": "svc2"},
                     headers=bearer(token))
    assert r.status_code == 200, r.text
    assert only(platform, Action.AUTHENTICATION_CHANGED)["details"]["changed"] == ["name"]

    flow = {"name": "call", "trigger": {"type": "manual"}, "steps": [
        {"name": "get", "connector": "http", "auth": auth_id,
         "input": {"method": "GET", "url": f"{target.url}/data"}}]}
    r = client.post("/v1/workflows", json={"definition": flow}, headers=bearer(token))
    assert r.status_code == 201, r.text
    workflow_id = r.json()["id"]
    assert only(platform, Action.WORKFLOW_CREATED)["details"]["version"] == 1
    r = client.put(f"/v1/workflows/{workflow_id}", json={"definition": flow}, headers=bearer(token))
    assert r.status_code == 200, r.text
    assert only(platform, Action.WORKFLOW_CHANGED)["details"]["version"] == 2

    target.script("/data", (200, {}, {"ok": True}))
    r = client.post(f"/v1/workflows/{workflow_id}/run", json={"wait": True, "timeout_s": 20},
                    headers=bearer(token))
    assert r.status_code in (200, 202), r.text
    execution_id = r.json()["id"]
    assert r.json()["status"] == "succeeded", r.json()
    assert target.hits("/data")[0].headers.get("x-api-key") == CANARY_KEY
    used = only(platform, Action.AUTHENTICATION_DECRYPTED)
    assert used["target"] == f"authentication:{auth_id}"
    assert used["details"]["execution"] == execution_id and used["details"]["step"]
    assert used["actor"]["kind"] == "system"
    # The run answered its detail: that is a read of execution data too.
    assert only(platform, Action.EXECUTION_DATA_READ)["target"] == f"execution:{execution_id}"
    assert client.get(f"/v1/executions/{execution_id}", headers=bearer(token)).status_code == 200
    assert len(records(platform, Action.EXECUTION_DATA_READ)) == 2

    target.script("/ping", (200, {}, {"pong": True}))
    assert client.post(f"/v1/authentications/{auth_id}/test",
                       headers=bearer(token)).status_code == 200
    tested = records(platform, Action.AUTHENTICATION_DECRYPTED)[-1]
    assert tested["details"]["test"] == "connection" and tested["actor"]["kind"] == "token"

    assert client.delete(f"/v1/workflows/{workflow_id}", headers=bearer(token)).status_code == 204
    assert only(platform, Action.WORKFLOW_DELETED)["target"] == f"workflow:{workflow_id}"
    assert client.delete(f"/v1/authentications/{auth_id}",
                         headers=bearer(token)).status_code == 204
    assert only(platform, Action.AUTHENTICATION_DELETED)["target"] == f"authentication:{auth_id}"
    assert CANARY_KEY not in json.dumps(records(platform))


def test_key_operations_and_account_deletion(platform: Platform, client: TestClient,
                                             account: tuple[str, str]) -> None:
    account_id, token = account
    cell = platform.cells["us"]
    made = only(platform, Action.AUDIT_KEY_CREATED)  # this data directory's first start
    assert made["details"]["public_key"] == cell.audit.signer.verifier.public_b64()
    assert only(platform, Action.KEY_CREATED)["target"] == f"account:{account_id}"
    r = client.post("/v1/workflows", headers=bearer(token), json={"definition": {
        "name": "w", "trigger": {"type": "manual"},
        "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}})
    assert r.status_code == 201, r.text
    keys.rotate_kek(cell, clock=platform.clock)
    keys.rotate_account_data(cell, account_id, clock=platform.clock)
    rotated = records(platform, Action.KEY_ROTATED)
    assert [r["details"]["key"] for r in rotated] == ["kek", "data"]
    assert rotated[0]["actor"] == {"kind": "operator", "id": "cli"}
    keys.retire_kek(cell, 1, clock=platform.clock)
    assert only(platform, Action.KEY_RETIRED)["details"]["upto"] == 1
    destroyed = records(platform, Action.KEY_DESTROYED)  # the old data key went
    assert destroyed and destroyed[0]["details"]["key"] == "data"

    r = client.request("DELETE", "/v1/account", json={"confirm": account_id},
                       headers=bearer(token))
    assert r.status_code == 200, r.text
    assert records(platform, Action.KEY_DESTROYED)[-1]["details"]["reason"] == "account deletion"
    deleted = only(platform, Action.ACCOUNT_DELETED)
    assert deleted["account_id"] == account_id and deleted["details"]["removed"]["workflows"] == 1
    with cell.read() as conn:  # the trail outlives the account and still verifies
        assert verify(conn, "us", cell.audit.signer.verifier).ok


def test_an_action_whose_record_cannot_be_written_does_not_happen(
        platform: Platform, client: TestClient, account: tuple[str, str],
        target: Target) -> None:
    _, token = account
    r = client.post("/v1/authentications", headers=bearer(token), json={
        "name": "svc", "type": "api_key", "shared": True,
        "settings": {"in": "header", "param": "X-Api-Key"}, "secret": {"key": CANARY_KEY}})
    auth_id = r.json()["id"]
    flow = {"name": "call", "trigger": {"type": "manual"}, "steps": [
        {"name": "get", "connector": "http", "auth": auth_id,
         "input": {"method": "GET", "url": f"{target.url}/data"}}]}
    workflow_id = client.post("/v1/workflows", json={"definition": flow},
                              headers=bearer(token)).json()["id"]
    before = len(records(platform))

    db = platform.settings.data_dir / "us.db"
    with sqlite3.connect(db) as raw:  # the audit table refuses every new record
        raw.execute("CREATE TRIGGER audit_down BEFORE INSERT ON audit_records "
                    "BEGIN SELECT RAISE(ABORT, 'audit storage unavailable'); END")
    r = client.post("/v1/workflows", json={"definition": {**flow, "name": "second"}}, headers=bearer(token))
    assert r.status_code == 503, r.text
    assert r.json()["error"]["code"] == "audit_unavailable"
    assert r.json()["error"]["retryable"] is True
    with platform.cells["us"].read() as conn:
        assert conn.execute(select(func.count()).select_from(workflows)).scalar_one() == 1

    target.script("/data", (200, {}, {"ok": True}))
    r = client.post(f"/v1/workflows/{workflow_id}/run", json={"wait": False},
                    headers=bearer(token))
    # Starting an execution is not an audited action; its step's decryption is, so the
    # connector never gets the secret and the target is never called.
    assert r.status_code == 202, r.text
    execution_id = r.json()["execution_id"]
    for _ in range(400):  # the execution runs on the app's own queue
        listed = client.get("/v1/executions", headers=bearer(token)).json()
        if listed[0]["status"] in ("failed", "succeeded"):
            break
        time.sleep(0.05)
    assert listed[0]["status"] == "failed", listed
    assert target.hits("/data") == []
    with sqlite3.connect(db) as raw:
        raw.execute("DROP TRIGGER audit_down")
    detail = client.get(f"/v1/executions/{execution_id}", headers=bearer(token)).json()
    assert detail["status"] == "failed", detail
    assert len(records(platform)) == before + 1  # only the read just now


def test_the_account_reads_exports_and_proves_its_trail(
        platform: Platform, client: TestClient, account: tuple[str, str]) -> None:
    account_id, token = account
    other_id, other_token = (lambda a: (a[0].id, a[1]))(accounts.create_account(
        platform.cells, platform.clock, name="Other", region="us"))
    flow = {"name": "w", "trigger": {"type": "manual"},
            "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}
    for i, t in enumerate((token, other_token, token)):
        r = client.post("/v1/workflows", json={"definition": {**flow, "name": f"w{i}"}}, headers=bearer(t))
        assert r.status_code == 201, r.text

    r = client.get("/v1/account/audit", params={"action": "workflow."}, headers=bearer(token))
    assert r.status_code == 200, r.text
    mine = r.json()["records"]
    assert len(mine) == 2 and {x["account_id"] for x in mine} == {account_id}
    r = client.get("/v1/account/audit", params={"action": "workflow.created", "limit": 1},
                   headers=bearer(token))
    assert len(r.json()["records"]) == 1 and r.json()["next_after"] == mine[0]["seq"]
    r = client.get("/v1/account/audit", params={"after": r.json()["next_after"]},
                   headers=bearer(token))
    assert [x["seq"] for x in r.json()["records"]] == [mine[1]["seq"]]
    assert client.get("/v1/account/audit", params={"action": "nope"},
                      headers=bearer(token)).status_code == 422

    r = client.get("/v1/account/audit/export", headers=bearer(token))
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(x) for x in r.text.splitlines()]
    exported = only(platform, Action.EXPORT)  # recorded before the export ran, so in it
    assert exported["details"]["what"] == "audit trail"
    everything = client.get("/v1/account/audit", headers=bearer(token)).json()["records"]
    assert lines == everything and lines[-1]["seq"] == exported["seq"]
    assert {x["account_id"] for x in lines} == {account_id}

    seq = mine[0]["seq"]
    r = client.get(f"/v1/account/audit/{seq}/proof", headers=bearer(token))
    assert r.status_code == 404 and r.json()["error"]["retryable"] is True  # no checkpoint yet
    cell = platform.cells["us"]
    with cell.write() as conn:
        log.checkpoint(conn, "us", cell.audit.signer, platform.clock.now())
    r = client.get(f"/v1/account/audit/{seq}/proof", headers=bearer(token))
    assert r.status_code == 200, r.text
    body = r.json()
    leaf = merkle.leaf_hash(canonical(body["record"]))
    assert merkle.verify_inclusion(seq - 1, body["proof"]["tree_size"], leaf,
                                   [bytes.fromhex(h) for h in body["proof"]["path"]],
                                   bytes.fromhex(body["checkpoint"]["root"]))
    verifier = Verifier.from_b64(body["public_key"])
    assert verifier.verify(body["checkpoint"]["body"].encode(), body["checkpoint"]["signature"])

    theirs = client.get("/v1/account/audit", headers=bearer(other_token)).json()["records"][0]
    assert theirs["account_id"] == other_id
    assert client.get(f"/v1/account/audit/{theirs['seq']}/proof",
                      headers=bearer(token)).status_code == 404
    r = client.get("/v1/account/audit/consistency", params={"first": 1}, headers=bearer(token))
    assert r.status_code == 200 and r.json()["proof"]["first"] == 1


# Kinds whose actions other modules build; their tests check the record.
ELSEWHERE = {
    Action.STAFF_ACCESS_GRANTED: "test_staff",
    Action.STAFF_ACCESS_REVOKED: "test_staff",
    Action.STAFF_ACCESS_USED: "test_staff",
    Action.STAFF_ADDED: "test_staff",
    Action.STAFF_REMOVED: "test_staff",
    Action.PURGE: "test_purge",
    Action.ERASURE: "test_subject_requests",
    Action.BACKUP_TAKEN: "test_backup",
    Action.BACKUP_RESTORED: "test_backup",
    Action.BACKUP_DELETED: "test_backup",
    Action.AUDIT_SINK_CREATED: "test_siem",
    Action.AUDIT_SINK_DELETED: "test_siem",
}


def test_every_kind_of_the_catalogue_is_checked_somewhere() -> None:
    root = Path(__file__).resolve().parents[1]
    missing = []
    for action in Action:
        if action in SEEN:
            continue
        prefix = ELSEWHERE.get(action)
        files = [] if prefix is None else list(root.rglob(f"{prefix}*.py"))
        # The test names the kind (Action.X) or its value as a string literal.
        if not any(f"Action.{action.name}" in text or f'"{action.value}"' in text
                   for text in (f.read_text() for f in files)):
            missing.append(action.value)
    assert not missing, f"no test checks these audit kinds: {missing}"
