"""The operator's commands for staff access (I7) and first owners: `sealflow staff add |
remove | list`, and `--owner-email` on `accounts create` and `init` (a one-time invitation
the first owner accepts with a name and a password). Real SQLite cells in a data directory,
the real Typer application."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from sealflow.audit import log
from sealflow.audit.records import Action
from sealflow.bootstrap import build_platform
from sealflow.cli import app as cli
from sealflow.config import RegionSettings, Settings
from sealflow.identity.passwords import PasswordHasher
from sealflow.services import accounts, login, members, staff_members
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity, load_or_create_pepper, pepper_file

PASSWORD = "correct horse battery staple"


def _ident(data: Path) -> Identity:
    pepper = load_or_create_pepper(pepper_file(data))
    return Identity(hasher=PasswordHasher(pepper, rounds=4), pepper=pepper)


def test_staff_add_list_remove(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, regions={"us": RegionSettings()})
    p = build_platform(settings)
    ident = _ident(data)
    try:
        account, _ = accounts.create_account(p.cells, p.clock, name="Ops", region="us")
        owner = Caller(region="us", account_id=account.id, token_id="operator")
        inv = members.invite(p.cells, p.clock, ident, owner, email="grace@ops.example",
                             role="viewer")
        grace = members.accept(p.cells, p.clock, ident, token=inv.token, name="Grace",
                               password=PASSWORD)
    finally:
        p.cells.dispose()
    runner = CliRunner()
    base = ["--data-dir", str(data), "staff"]

    added = runner.invoke(cli, [*base, "add", "--email", "Grace@Ops.example"])
    assert added.exit_code == 0, added.output
    out = json.loads(added.output)
    assert (out["user_id"], out["account_id"], out["name"]) == (grace.id, account.id, "Grace")
    assert "second factor" in out["warning"]  # none enrolled yet: staff access needs one
    again = runner.invoke(cli, [*base, "add", "--email", "grace@ops.example"])
    assert again.exit_code == 1 and "already platform staff" in again.output
    unknown = runner.invoke(cli, [*base, "add", "--email", "nobody@ops.example"])
    assert unknown.exit_code == 1 and "no member with that e-mail" in unknown.output

    listed = runner.invoke(cli, [*base, "list"])
    assert listed.exit_code == 0, listed.output
    assert [s["user_id"] for s in json.loads(listed.output)] == [grace.id]

    removed = runner.invoke(cli, [*base, "remove", "--email", "grace@ops.example"])
    assert removed.exit_code == 0, removed.output
    assert json.loads(runner.invoke(cli, [*base, "list"]).output) == []
    twice = runner.invoke(cli, [*base, "remove", "--email", "grace@ops.example"])
    assert twice.exit_code == 1 and "not platform staff" in twice.output

    p = build_platform(settings)
    try:
        assert not staff_members.is_staff(p.cells, "us", grace.id)
        with p.cells["us"].read() as conn:  # both on the audit trail, by the operator
            trail = [json.loads(r.record) for r in log.iter_records(conn)]
    finally:
        p.cells.dispose()
    changes = [(r["action"], r["target"], r["actor"]["kind"]) for r in trail
               if r["action"] in (Action.STAFF_ADDED.value, Action.STAFF_REMOVED.value)]
    assert changes == [("staff.added", f"user:{grace.id}", "operator"),
                       ("staff.removed", f"user:{grace.id}", "operator")]


def test_accounts_create_with_owner_email_invites_the_first_owner(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    made = runner.invoke(cli, ["--data-dir", str(data), "migrate"])
    assert made.exit_code == 0, made.output
    done = runner.invoke(cli, ["--data-dir", str(data), "accounts", "create", "--name", "Acme",
                               "--owner-email", "ada@acme.example"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert out["token"].startswith("sf_us_") and out["owner"]["email"] == "ada@acme.example"
    invitation = out["owner"]["invitation"]
    assert invitation.startswith("sfi_us_")

    settings = Settings(data_dir=data, regions={"us": RegionSettings()})
    p = build_platform(settings)
    ident = _ident(data)
    try:
        owner = members.accept(p.cells, p.clock, ident, token=invitation, name="Ada",
                               password=PASSWORD)
        assert (owner.role, owner.email) == ("owner", "ada@acme.example")
        signed_in = login.login(p.cells, p.clock, ident, email="ada@acme.example",
                                password=PASSWORD, client="ip_1")
        assert (signed_in.account_id, signed_in.role) == (out["id"], "owner")
    finally:
        p.cells.dispose()

    bad = runner.invoke(cli, ["--data-dir", str(data), "accounts", "create", "--name", "Bad",
                              "--owner-email", "not-an-address"])
    assert bad.exit_code == 1
    assert "$.email" in bad.output and "could not be invited" in bad.output


def test_init_with_owner_email_prints_the_invitation_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    first = runner.invoke(cli, ["--data-dir", str(data), "init", "--name", "Acme",
                                "--owner-email", "ada@acme.example"])
    assert first.exit_code == 0, first.output
    assert re.search(r"sfi_us_[A-Za-z0-9_-]{43}", first.output), first.output
    assert "ada@acme.example" in first.output
    second = runner.invoke(cli, ["--data-dir", str(data), "init", "--owner-email",
                                 "ada@acme.example"])
    assert second.exit_code == 0 and "sfi_" not in second.output
