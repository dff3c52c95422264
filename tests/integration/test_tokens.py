"""API tokens (SPEC I5): `sf_<region>_` and 256 random bits, shown once, kept as SHA-256 only,
scoped to permissions, never more than their maker's role now, expiring, revocable, last use
recorded (at most once a minute). Through the real application over a real SQLite cell, with
an injected clock the tests move (never sleep). Members are made by the real invitation
service; the tokens they make stand in for their logins (services.tokens.create with their
Caller, as a session would give it)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from sealflow.api.app import create_app
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.core.errors import InvalidInput
from sealflow.db import tables
from sealflow.db.engine import make_engine
from sealflow.db.migrate import alembic_config, upgrade
from sealflow.identity.passwords import PasswordHasher
from sealflow.services import accounts, members, tokens
from sealflow.services.accounts import Caller, Unauthenticated, hash_token
from sealflow.services.users import Identity, load_or_create_pepper, pepper_file
from tests.support.clock import ManualClock as Clock

MANUAL = {"name": "manual", "trigger": {"type": "manual"},
          "steps": [{"name": "one", "connector": "transform", "input": {"expression": "1"}}]}
WRONG = "missing or invalid API token"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def platform(tmp_path: Path, clock: Clock) -> Iterator[Platform]:
    p = build_platform(Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()}),
                       clock=clock)
    yield p
    p.cells.dispose()


@pytest.fixture
def app(platform: Platform) -> FastAPI:
    return create_app(platform, run_workers=False)


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app, base_url="https://testserver")


@pytest.fixture
def first(platform: Platform) -> tuple[Caller, str]:
    """A new account and its first (operator's) token."""
    account, token = accounts.create_account(platform.cells, platform.clock, name="Acme",
                                             region="us")
    return Caller(region="us", account_id=account.id, token_id="operator"), token


def member(platform: Platform, owner: Caller, email: str, role: str) -> Caller:
    """A real member (invited and accepted), as the Caller its login would give."""
    pepper = load_or_create_pepper(pepper_file(platform.settings.data_dir))
    ident = Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)
    inv = members.invite(platform.cells, platform.clock, ident, owner, email=email, role=role)
    m = members.accept(platform.cells, platform.clock, ident, token=inv.token, name="Ada",
                       password="correct horse battery staple")
    return Caller(region="us", account_id=owner.account_id, token_id="session:x", role=role,
                  user_id=m.id)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(r: Any) -> dict[str, Any]:
    return r.json()["error"]  # type: ignore[no-any-return]


def test_a_token_has_the_prefix_256_random_bits_and_is_kept_only_as_its_sha256(
    platform: Platform, client: TestClient, first: tuple[Caller, str]
) -> None:
    owner, token = first
    made = client.post("/v1/tokens", json={"name": "ci"}, headers=bearer(token))
    assert made.status_code == 201, made.text
    new = made.json()["token"]
    many = {tokens.create(platform.cells, platform.clock, owner, name="n").token
            for _ in range(20)} | {token, new}
    assert len(many) == 22
    for t in many:
        m = re.fullmatch(r"sf_us_([A-Za-z0-9_-]{43})", t)
        assert m, t
        assert len(base64.urlsafe_b64decode(m.group(1) + "=")) == 32  # 256 bits
    # Shown once: listing never shows it.
    listed = client.get("/v1/tokens", headers=bearer(new))
    assert listed.status_code == 200 and new not in listed.text and token not in listed.text
    assert {t["name"] for t in listed.json()} >= {"first token", "ci"}
    # Stored as SHA-256 only: no token is anywhere in the database files.
    with platform.cells["us"].read() as conn:
        hashes = set(conn.execute(select(tables.api_tokens.c.token_hash)).scalars())
    assert {hash_token(t) for t in many} <= hashes
    data = b"".join(f.read_bytes() for f in platform.settings.data_dir.glob("us.db*"))
    assert data
    for t in many:
        assert t.encode() not in data and t[6:].encode() not in data


def test_scopes_limit_what_a_token_does(
    client: TestClient, first: tuple[Caller, str]
) -> None:
    _, token = first
    made = client.post("/v1/tokens", headers=bearer(token), json={
        "name": "read only", "scopes": ["workflows.read", "tokens.own"]})
    assert made.status_code == 201, made.text
    assert made.json()["scopes"] == ["tokens.own", "workflows.read"]
    read_only = made.json()["token"]
    assert client.get("/v1/workflows", headers=bearer(read_only)).status_code == 200
    refused = client.post("/v1/workflows", json={"definition": MANUAL},
                          headers=bearer(read_only))
    assert refused.status_code == 403
    assert error(refused)["code"] == "forbidden"
    assert error(refused)["permission"] == "workflows.write"
    assert "scopes do not include workflows.write" in error(refused)["message"]
    # It cannot make a stronger token than itself, nor one beyond its scopes.
    wider = client.post("/v1/tokens", headers=bearer(read_only),
                        json={"name": "wider", "scopes": ["workflows.write"]})
    assert wider.status_code == 422
    assert error(wider)["issues"][0]["path"] == "$.scopes[0]"
    assert "workflows.write" in error(wider)["issues"][0]["message"]
    same = client.post("/v1/tokens", headers=bearer(read_only), json={"name": "same"})
    assert same.status_code == 201 and same.json()["scopes"] == ["tokens.own", "workflows.read"]
    # Without tokens.own a token cannot manage tokens at all.
    plain = client.post("/v1/tokens", headers=bearer(token),
                        json={"name": "plain", "scopes": ["workflows.read"]}).json()["token"]
    assert error(client.get("/v1/tokens", headers=bearer(plain)))["permission"] == "tokens.own"


def test_scopes_and_expiry_are_checked(
    platform: Platform, client: TestClient, first: tuple[Caller, str]
) -> None:
    owner, token = first
    cases: list[tuple[dict[str, Any], str]] = [
        ({"scopes": ["nope"]}, "$.scopes[0]"), ({"scopes": []}, "$.scopes"),
        ({"expires_in_days": 366}, "$.expires_in_days"),
        ({"expires_in_days": 0}, "$.expires_in_days")]
    for body, path in cases:
        r = client.post("/v1/tokens", headers=bearer(token), json={"name": "x", **body})
        assert r.status_code == 422, (body, r.text)
        assert path.removeprefix("$.") in error(r)["issues"][0]["path"], (body, r.text)
    with pytest.raises(InvalidInput):
        tokens.create(platform.cells, platform.clock, owner, name=" ")
    with pytest.raises(InvalidInput):
        tokens.create(platform.cells, platform.clock, owner, name="x", scopes=[])
    viewer = member(platform, owner, "vera@example.com", "viewer")
    with pytest.raises(InvalidInput) as caught:
        tokens.create(platform.cells, platform.clock, viewer, name="x",
                      scopes=["workflows.read", "workflows.run"])
    assert caught.value.issues[0].path == "$.scopes[1]"
    assert "beyond your own permissions" in caught.value.issues[0].message


def test_a_token_expires(
    platform: Platform, client: TestClient, clock: Clock, first: tuple[Caller, str]
) -> None:
    _, token = first
    made = client.post("/v1/tokens", headers=bearer(token), json={"name": "default"}).json()
    assert datetime.fromisoformat(made["expires_at"]) == clock.now() + timedelta(days=90)
    short = client.post("/v1/tokens", headers=bearer(token),
                        json={"name": "short", "expires_in_days": 1}).json()["token"]
    clock.move(days=1, seconds=-1)
    assert client.get("/v1/account", headers=bearer(short)).status_code == 200
    clock.move(seconds=1)
    r = client.get("/v1/account", headers=bearer(short))
    assert (r.status_code, error(r)["message"]) == (401, WRONG)
    clock.move(days=89)
    assert client.get("/v1/account", headers=bearer(made["token"])).status_code == 401
    assert client.get("/v1/account", headers=bearer(token)).status_code == 200  # never expires
    wrong = client.get("/v1/account", headers=bearer("sf_us_" + "A" * 43))
    assert (wrong.status_code, error(wrong)["message"]) == (401, WRONG)


def test_revocation_is_immediate_and_limited_to_ones_own_unless_tokens_manage(
    platform: Platform, client: TestClient, first: tuple[Caller, str]
) -> None:
    owner, operator = first
    builder = member(platform, owner, "bo@example.com", "builder")
    admin = member(platform, owner, "al@example.com", "admin")
    b1 = tokens.create(platform.cells, platform.clock, builder, name="b1")
    b2 = tokens.create(platform.cells, platform.clock, builder, name="b2")
    a1 = tokens.create(platform.cells, platform.clock, admin, name="a1")
    # A builder lists and revokes its own only; another's is not found.
    seen = client.get("/v1/tokens", headers=bearer(b1.token)).json()
    assert {t["name"] for t in seen} == {"b1", "b2"}
    assert {t["user_id"] for t in seen} == {builder.user_id}
    r = client.delete(f"/v1/tokens/{a1.view.id}", headers=bearer(b1.token))
    assert (r.status_code, error(r)["code"]) == (404, "not_found")
    assert client.delete(f"/v1/tokens/{b2.view.id}", headers=bearer(b1.token)).status_code == 204
    r = client.get("/v1/account", headers=bearer(b2.token))
    assert (r.status_code, error(r)["message"]) == (401, WRONG)
    # An admin (tokens.manage) sees and revokes every token of the account.
    everything = client.get("/v1/tokens", headers=bearer(a1.token)).json()
    assert {t["name"] for t in everything} == {"first token", "b1", "b2", "a1"}
    assert next(t for t in everything if t["name"] == "b2")["revoked_at"] is not None
    assert client.delete(f"/v1/tokens/{b1.view.id}", headers=bearer(a1.token)).status_code == 204
    assert client.get("/v1/account", headers=bearer(b1.token)).status_code == 401
    # Revoking twice changes nothing; the operator's token may revoke itself.
    assert client.delete(f"/v1/tokens/{b1.view.id}", headers=bearer(a1.token)).status_code == 204
    ops = next(t for t in everything if t["name"] == "first token")
    assert ops["user_id"] is None and ops["role"] == "owner" and ops["scopes"] is None
    assert client.delete(f"/v1/tokens/{ops['id']}", headers=bearer(operator)).status_code == 204
    assert client.get("/v1/account", headers=bearer(operator)).status_code == 401
    # Another account's tokens are not found, even for an admin.
    other, _ = first_of(platform, "Other")
    theirs = tokens.create(platform.cells, platform.clock, other, name="theirs")
    assert client.delete(f"/v1/tokens/{theirs.view.id}",
                         headers=bearer(a1.token)).status_code == 404
    assert "theirs" not in client.get("/v1/tokens", headers=bearer(a1.token)).text


def first_of(platform: Platform, name: str) -> tuple[Caller, str]:
    account, token = accounts.create_account(platform.cells, platform.clock, name=name,
                                             region="us")
    return Caller(region="us", account_id=account.id, token_id="operator"), token


def _last_used(platform: Platform, token_id: str) -> datetime | None:
    with platform.cells["us"].read() as conn:
        return conn.execute(select(tables.api_tokens.c.last_used_at).where(  # type: ignore[no-any-return]
            tables.api_tokens.c.id == token_id)).scalar_one()


def test_last_use_is_recorded_at_most_once_a_minute(
    platform: Platform, client: TestClient, clock: Clock, first: tuple[Caller, str]
) -> None:
    owner, _ = first
    made = tokens.create(platform.cells, platform.clock, owner, name="t")
    assert _last_used(platform, made.view.id) is None
    start = clock.now()
    assert client.get("/v1/account", headers=bearer(made.token)).status_code == 200
    assert _last_used(platform, made.view.id) == start
    clock.move(seconds=59)
    client.get("/v1/account", headers=bearer(made.token))
    assert _last_used(platform, made.view.id) == start  # not written again within the minute
    clock.move(seconds=1)
    client.get("/v1/account", headers=bearer(made.token))
    assert _last_used(platform, made.view.id) == start + timedelta(seconds=60)
    listed = client.get("/v1/tokens", headers=bearer(made.token)).json()
    assert next(t for t in listed if t["id"] == made.view.id)["last_used_at"] is not None


def test_a_demoted_members_tokens_shrink_and_a_removed_members_stop(
    platform: Platform, client: TestClient, first: tuple[Caller, str]
) -> None:
    owner, _ = first
    admin = member(platform, owner, "al@example.com", "admin")
    full = tokens.create(platform.cells, platform.clock, admin, name="full")
    scoped = tokens.create(platform.cells, platform.clock, admin, name="scoped",
                           scopes=["members.read", "workflows.write"])
    assert client.get("/v1/me", headers=bearer(full.token)).json()["role"] == "admin"
    assert client.post("/v1/workflows", json={"definition": MANUAL},
                       headers=bearer(scoped.token)).status_code == 201
    members.change_role(platform.cells, platform.clock, owner, admin.user_id or "", "viewer")
    me = client.get("/v1/me", headers=bearer(full.token)).json()
    assert (me["role"], me["user_id"]) == ("viewer", admin.user_id)
    r = client.post("/v1/workflows", json={"definition": MANUAL}, headers=bearer(scoped.token))
    assert (r.status_code, error(r)["permission"]) == (403, "workflows.write")
    assert client.get("/v1/members", headers=bearer(scoped.token)).status_code == 200
    # Promoted again, a token does not grow past the role it was made with.
    member(platform, owner, "olga@example.com", "owner")  # the account keeps an owner
    members.change_role(platform.cells, platform.clock, owner, admin.user_id or "", "owner")
    assert client.get("/v1/me", headers=bearer(full.token)).json()["role"] == "admin"
    r = client.request("DELETE", "/v1/account", json={"confirm": owner.account_id},
                       headers=bearer(full.token))
    assert (r.status_code, error(r)["permission"]) == (403, "account.delete")
    members.change_role(platform.cells, platform.clock, owner, admin.user_id or "", "admin")
    members.remove(platform.cells, platform.clock, owner, admin.user_id or "")
    r = client.get("/v1/account", headers=bearer(full.token))
    assert (r.status_code, error(r)["message"]) == (401, WRONG)


def test_a_token_cannot_manage_its_members_second_factor(
    platform: Platform, client: TestClient, first: tuple[Caller, str]
) -> None:
    owner, _ = first
    admin = member(platform, owner, "al@example.com", "admin")
    made = tokens.create(platform.cells, platform.clock, admin, name="t")
    for path in ("/v1/me/totp", "/v1/me/totp/confirm"):
        r = client.post(path, json={"code": "123456"}, headers=bearer(made.token))
        assert (r.status_code, error(r)["code"]) == (403, "session_required"), path


def test_operator_tokens_from_the_cli_take_scopes_and_expiry(
    platform: Platform, client: TestClient, clock: Clock, first: tuple[Caller, str]
) -> None:
    owner, _ = first
    scoped = accounts.issue_token(platform.cells, clock, region="us",
                                  account_id=owner.account_id, name="ops",
                                  scopes=["workflows.read"], expires_in_days=2)
    who = accounts.authenticate(platform.cells, scoped, clock)
    assert (who.role, who.user_id, who.scopes) == ("owner", None, frozenset({"workflows.read"}))
    assert client.post("/v1/workflows", json={"definition": MANUAL},
                       headers=bearer(scoped)).status_code == 403
    with pytest.raises(InvalidInput):
        accounts.issue_token(platform.cells, clock, region="us", account_id=owner.account_id,
                             name="x", scopes=["root"])
    clock.move(days=2)
    with pytest.raises(Unauthenticated):
        accounts.authenticate(platform.cells, scoped, clock)


def test_the_cli_command(tmp_path: Path) -> None:
    from sealflow.cli import app as cli

    data = tmp_path / "data"
    settings = Settings(data_dir=data, regions={"us": RegionSettings()})
    p = build_platform(settings)
    try:
        account, _ = accounts.create_account(p.cells, p.clock, name="Acme", region="us")
    finally:
        p.cells.dispose()
    runner = CliRunner()
    args = ["--data-dir", str(data), "accounts", "token", "--account", account.id]
    done = runner.invoke(cli, [*args, "--scopes", "workflows.read, executions.read",
                               "--expires-in-days", "30"])
    assert done.exit_code == 0, done.output
    token = done.output.strip()
    assert token.startswith("sf_us_")
    bad = runner.invoke(cli, [*args, "--scopes", "workflows.read,nope"])
    assert bad.exit_code == 1 and "--scopes[1]" in bad.output and "nope" in bad.output
    p = build_platform(settings)
    try:
        who = accounts.authenticate(p.cells, token)
        assert who.scopes == frozenset({"workflows.read", "executions.read"})
    finally:
        p.cells.dispose()


def test_tokens_made_before_scopes_act_as_the_owner_with_every_scope(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'us.db'}")
    try:
        command.upgrade(alembic_config(engine), "0006")
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO accounts (id, name, region, created_at) "
                "VALUES ('a1', 'Acme', 'us', '2026-11-01 00:00:00')")
            conn.exec_driver_sql(
                "INSERT INTO api_tokens (id, account_id, name, token_hash, created_at) "
                f"VALUES ('t1', 'a1', 'old', '{hash_token('sf_us_old')}', "
                "'2026-11-01 00:00:00')")
        upgrade(engine)
        with engine.connect() as conn:
            row = conn.execute(select(tables.api_tokens)).one()
    finally:
        engine.dispose()
    assert (row.role, row.scopes, row.user_id, row.expires_at) == ("owner", None, None, None)


def test_every_failure_is_the_same_401(
    platform: Platform, clock: Clock, first: tuple[Caller, str]
) -> None:
    owner, token = first
    admin = member(platform, owner, "al@example.com", "admin")
    made = tokens.create(platform.cells, clock, admin, name="t", expires_in_days=None)
    assert made.view.expires_at is None
    assert accounts.authenticate(platform.cells, made.token, clock).role == "admin"
    with platform.cells["us"].write() as conn:
        conn.execute(tables.users.update().where(tables.users.c.id == admin.user_id)
                     .values(disabled_at=clock.now()))
    for wrong in (made.token, "Bearer x", "sf_zz_" + token[6:], token + "x", "sf_"):
        with pytest.raises(Unauthenticated) as caught:
            accounts.authenticate(platform.cells, wrong, clock)
        assert caught.value.message == WRONG
    assert accounts.issue_token(platform.cells, clock, region="us",
                                account_id=owner.account_id, name="x").startswith("sf_us_")
    with pytest.raises(InvalidInput):
        accounts.issue_token(platform.cells, clock, region="us", account_id=owner.account_id,
                             name="x", expires_in_days=400)
