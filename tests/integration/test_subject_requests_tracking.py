"""Data subject requests (D5): tracking against legal deadlines (the clock moved, never
slept), refusals (the last owner, an admin erasing an owner, bad input naming the field), and
the `sealflow subjects` CLI. Helpers and fixtures: tests/integration/test_subject_requests.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.integration.test_subject_requests import (
    BASE,
    CANARY_IP,
    World,
    join,
    make_world,
    request,
    run,
    write_logs,
)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def test_erasing_the_last_owner_is_refused_and_changes_nothing(world: World) -> None:
    w = world
    owner = join(w, "owner")
    made = request(w, "erasure", owner.email)
    before = (w.data / "us.db").stat().st_size
    r = run(w, made["id"], expect=409)
    assert r["error"]["code"] == "last_owner" and "last owner" in r["error"]["message"]
    with w.api() as api:
        again = api.get(f"{BASE}/{made['id']}").json()
    assert again["status"] == "received" and again["member_email"] == owner.email
    assert owner.session.get("/v1/me").status_code == 200
    assert (w.data / "us.db").stat().st_size >= before
    # With a second owner, the first one can be erased.
    join(w, "owner", tag="second")
    assert run(w, made["id"])["status"] == "completed"


def test_an_admin_cannot_erase_an_owner(world: World) -> None:
    w = world
    owner = join(w, "owner")
    join(w, "owner", tag="b")
    admin = join(w, "admin", tag="a")
    r = admin.session.post(BASE, json={"kind": "erasure", "email": owner.email})
    assert r.status_code == 201, r.text
    refused = admin.session.post(f"{BASE}/{r.json()['id']}/run")
    assert refused.status_code == 403 and refused.json()["error"]["permission"] == "owners.manage"
    assert owner.session.get("/v1/me").status_code == 200


def test_due_dates_and_the_overdue_listing_follow_the_clock(world: World) -> None:
    w = world
    owner = join(w, "owner")
    gdpr = request(w, "export", owner.email, law="gdpr")
    ccpa = request(w, "erasure", owner.email, law="ccpa")
    received = datetime.fromisoformat(gdpr["received_at"])
    assert received == w.clock.now()
    assert (datetime.fromisoformat(gdpr["due_at"]) - received).days == 30
    assert (datetime.fromisoformat(ccpa["due_at"]) - received).days == 45

    def overdue() -> list[str]:
        with w.api() as api:
            r = api.get(BASE, params={"overdue": "true"})
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()]

    assert overdue() == []
    w.clock.move(days=30)
    assert overdue() == []  # due, not yet past
    w.clock.move(seconds=1)
    assert overdue() == [gdpr["id"]]
    w.clock.move(days=15)
    assert overdue() == [gdpr["id"], ccpa["id"]]
    with w.api() as api:
        listed = api.get(BASE).json()
        assert [(x["id"], x["overdue"]) for x in listed] == [(gdpr["id"], True),
                                                              (ccpa["id"], True)]
        r = api.post(f"{BASE}/{ccpa['id']}/reject", json={"reason": "identity_not_verified"})
        assert r.status_code == 200 and r.json()["status"] == "rejected"
        assert r.json()["outcome"] == {"reason": "identity_not_verified"}
        assert api.post(f"{BASE}/{ccpa['id']}/run").status_code == 409
    assert run(w, gdpr["id"])["overdue"] is False  # completed late, but completed
    assert overdue() == []
    # Received by post weeks ago, entered only now: due (and overdue) from its receipt.
    with w.api() as api:
        r = api.post(BASE, json={"kind": "export", "email": owner.email,
                                 "received_at": "2026-11-20T09:30:00+01:00"})
    assert r.status_code == 201, r.text
    late = r.json()
    assert late["received_at"].startswith("2026-11-20T08:30:00")
    assert late["due_at"].startswith("2026-12-20T08:30:00") and late["overdue"] is True
    assert overdue() == [late["id"]]


def test_bad_input_names_the_field(world: World) -> None:
    w = world
    owner = join(w, "owner")
    with w.api() as api:
        cases = [
            ({"kind": "delete", "email": owner.email}, "kind"),
            ({"kind": "export", "law": "lgpd", "email": owner.email}, "law"),
            ({"kind": "export"}, "email"),
            ({"kind": "export", "email": "nobody@example.test"}, "email"),
            ({"kind": "export", "email": owner.email, "received_at": "2030-01-01T00:00:00Z"},
             "received_at"),
        ]
        for body, field in cases:
            r = api.post(BASE, json=body)
            expected = 404 if "nobody" in str(body) else 422
            assert r.status_code == expected, (body, r.text)
            assert field in r.text, (body, r.text)
        made = request(w, "erasure", owner.email)
        for bad in (["999.1.2.3"], ["a::b::c"], ["x"]):
            r = api.post(f"{BASE}/{made['id']}/run", json={"addresses": bad})
            assert r.status_code == 422 and "addresses" in r.text, (bad, r.text)
        assert api.get(f"{BASE}/nope").status_code == 404
        r = api.get(f"{BASE}/{made['id']}/export")
        assert r.status_code == 409 and "not a completed export" in r.text


def cli(w: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sealflow.cli", "--data-dir", str(w.data), "subjects", *args],
        capture_output=True, text=True, timeout=120)


def test_the_cli_exports_erases_and_lists(world: World, tmp_path: Path) -> None:
    w = world
    owner = join(w, "owner")
    m = join(w, "builder", ip=CANARY_IP, tag="cli")
    write_logs(w, m)
    w.p.cells.dispose()  # the CLI is another process on the same files
    a = ("--account", w.account_id)

    out = tmp_path / "export.json"
    r = cli(w, "export", *a, "--email", m.email.upper(), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "completed"
    assert out.stat().st_mode & 0o777 == 0o600
    assert json.loads(out.read_text())["data"]["users"]["email"] == m.email

    r = cli(w, "erase", *a, "--email", m.email)
    assert r.returncode == 1 and "--yes" in r.stderr
    r = cli(w, "erase", *a, "--email", m.email, "--law", "ccpa", "--yes")
    assert r.returncode == 0, r.stderr
    erased = json.loads(r.stdout)
    assert erased["status"] == "completed" and erased["outcome"]["removed"]["users"] == 1
    assert erased["requested_by"] == "operator:cli"
    assert m.email not in (w.data / "logs" / "sealflow-2026-11-29.jsonl").read_text()

    r = cli(w, "erase", *a, "--email", owner.email, "--yes")
    assert r.returncode == 2 and "last owner" in r.stderr, r.stderr
    r = cli(w, "erase", *a, "--email", m.email, "--yes")  # gone: nothing to find
    assert r.returncode == 2 and "no member of this account" in r.stderr, r.stderr

    r = cli(w, "list", *a)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert sorted((x["kind"], x["law"], x["status"]) for x in listed) == [
        ("erasure", "ccpa", "completed"), ("erasure", "gdpr", "received"),
        ("export", "gdpr", "completed")]
    r = cli(w, "list", *a, "--overdue")
    assert r.returncode == 0 and json.loads(r.stdout) == []


def test_an_erasure_finishes_the_job_for_a_member_removed_meanwhile(world: World) -> None:
    """Removing a member (DELETE /v1/members/{id}) leaves their API tokens and SSO identities
    as records; an erasure requested before still finds and removes those by member id."""
    w = world
    join(w, "owner")
    m = join(w, "builder", tag="removed")
    assert m.session.post("/v1/tokens", json={"name": "t"}).status_code == 201
    made = request(w, "erasure", m.email)
    with w.api() as api:
        assert api.delete(f"/v1/members/{m.id}").status_code == 204
    done = run(w, made["id"])
    assert done["status"] == "completed" and done["member_email"] is None
    assert done["outcome"]["removed"].get("api_tokens") == 1
    assert "users" not in done["outcome"]["removed"]


def test_an_export_can_be_downloaded_for_30_days(world: World) -> None:
    w = world
    owner = join(w, "owner")
    made = request(w, "export", owner.email)
    run(w, made["id"])
    with w.api() as api:
        w.clock.move(days=30)
        assert api.get(f"{BASE}/{made['id']}/export").status_code == 200
        w.clock.move(seconds=1)
        r = api.get(f"{BASE}/{made['id']}/export")
    assert r.status_code == 409 and "30 days" in r.json()["error"]["message"]


def test_without_its_audit_record_an_erasure_does_not_happen(world: World) -> None:
    """Fail closed (A2): the database refuses the audit record (a trigger stands in for a full
    disk); the erasure's transaction rolls back and the member is all there."""
    w = world
    join(w, "owner")
    m = join(w, "builder", tag="audited")
    made = request(w, "erasure", m.email)
    with w.p.cells["us"].write() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_records "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    with w.api() as api:
        r = api.post(f"{BASE}/{made['id']}/run")
        assert r.status_code == 503, r.text
        assert api.get(f"{BASE}/{made['id']}").json()["member_email"] == m.email
    assert m.session.get("/v1/me").status_code == 200
    assert not (w.data / "keys" / "us.erasures").exists()
