"""Alerts (A4) in-process over real SQLite files: the rules see a brute force through the
real login service, a broken audit chain (a record edited in the file behind the triggers'
back), staff access, decryption failures, failing workflows and a purge backlog; alerts
reach a signed webhook on 127.0.0.1, an SMTP server the test starts, and the log; one alert
per rule and key per window; at most N per sink per hour."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import ssl
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, insert, select

from sealflow.alerts.sinks import Alert, Dispatcher
from sealflow.audit.records import Action, Actor, ActorKind
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.core.errors import SealflowError
from sealflow.db.tables import audit_records, executions
from sealflow.monitoring.settings import EmailAlertSink, LogAlertSink, WebhookAlertSink
from sealflow.services import login as login_service
from sealflow.services.users import Identity
from sealflow.siem import formats
from tests.support.clock import ManualClock
from tests.support.receivers import HttpReceiver, make_certificates, start_http_receiver
from tests.support.server import free_port

SECRET = "alert-signing-key-" + uuid.uuid4().hex
LOOP: list[asyncio.AbstractEventLoop] = []


def run(coro: Any) -> Any:
    return LOOP[-1].run_until_complete(coro)


@pytest.fixture(autouse=True)
def loop() -> Iterator[None]:
    LOOP.append(asyncio.new_event_loop())
    yield
    LOOP.pop().close()


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = start_http_receiver()
    yield r
    r.close()


def make_platform(tmp_path: Path, receiver: HttpReceiver, **rules: Any) -> Platform:
    settings = Settings(
        data_dir=tmp_path / "data", regions={"us": RegionSettings()},
        ssrf_allow=("127.0.0.1/32",),
        alerts={"sinks": [{"kind": "webhook", "url": receiver.url, "secret": SECRET},
                          {"kind": "log"}],
                "rules": rules})
    return build_platform(settings, clock=ManualClock())


@pytest.fixture
def platform(tmp_path: Path, receiver: HttpReceiver) -> Iterator[Platform]:
    p = make_platform(tmp_path, receiver, failure_rate_min_executions=4, purge_backlog=2)
    yield p
    assert p.monitor is not None
    run(p.monitor.alerts.stop())
    p.cells.dispose()


def evaluate(p: Platform) -> list[Alert]:
    assert p.monitor is not None
    return list(run(p.monitor.alerts.run_once()))


def posted(receiver: HttpReceiver) -> list[dict[str, Any]]:
    for post in receiver.accepted:
        assert formats.verify_signature(SECRET.encode(), post.headers["x-sealflow-signature"],
                                        post.body)
    return [json.loads(p.body) for p in receiver.accepted]


def test_a_brute_force_through_the_login_service_fires_once_per_window(
    platform: Platform, receiver: HttpReceiver, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    p = platform
    assert evaluate(p) == []
    ident = Identity.build(p.settings.data_dir, p.settings.sessions, rounds=4)
    wrong = 0
    for _ in range(11):  # as a client guessing at the throttle's pace (I6) would
        with pytest.raises(SealflowError) as err:
            login_service.login(p.cells, p.clock, ident, email="victim@example.com",
                                password="wrong-password", client="hmac-sha256:client-1")
        wrong += err.value.code == "unauthenticated"
        p.clock.move(seconds=60)  # type: ignore[attr-defined]
    assert wrong >= 10  # the rest were throttled, writing no record
    with caplog.at_level(logging.WARNING, logger="sealflow.alerts"):
        fired = evaluate(p)
    assert sorted(a.rule for a in fired) == ["brute_force", "brute_force"]
    keys = sorted(a.key for a in fired)
    assert keys[0] == "us:client:hmac-sha256:client-1" and keys[1].startswith("us:target:email:")
    assert "victim@example.com" not in json.dumps(posted(receiver))  # never the e-mail
    assert {b["rule"] for b in posted(receiver)} == {"brute_force"}
    assert sum("ALERT" in r.getMessage() for r in caplog.records) == 2  # the log sink
    assert evaluate(p) == []  # deduplicated within the window
    assert len(receiver.accepted) == 2
    p.clock.move(seconds=3600)  # type: ignore[attr-defined]
    assert evaluate(p) == []  # the failures left the 15-minute window


def test_a_broken_audit_chain_fires(platform: Platform, receiver: HttpReceiver) -> None:
    p = platform
    cell = p.cells["us"]

    def append(n: int) -> None:
        with cell.write() as conn:
            for i in range(n):
                cell.audit.record(conn, account_id="acc-1", actor=Actor(ActorKind.USER, "u"),
                                  action=Action.WORKFLOW_CHANGED, target=f"workflow:{i}",
                                  at=p.clock.now(), details={"i": i})

    append(5)
    assert [a.rule for a in evaluate(p)] == []  # whole and verified (full and incremental)
    with cell.read() as conn:
        checked = int(conn.execute(select(func.max(audit_records.c.seq))).scalar_one())
    append(5)
    victim = checked + 3  # appended since the last check
    db = p.settings.data_dir / "us.db"
    attacker = sqlite3.connect(db, isolation_level=None)
    triggers = attacker.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
                                "AND tbl_name = 'audit_records'").fetchall()
    for name, _ in triggers:
        attacker.execute(f"DROP TRIGGER {name}")
    attacker.execute("UPDATE audit_records SET record = replace(record, 'workflow:2', "
                     "'workflow:9') WHERE seq = ?", (victim,))
    for _, sql in triggers:  # put them back: only the chain can tell now
        attacker.execute(sql)
    attacker.close()
    fired = evaluate(p)
    assert [a.rule for a in fired] == ["audit_chain"]
    assert f"record {victim}" in fired[0].summary and "edited" in fired[0].summary
    assert posted(receiver)[0]["rule"] == "audit_chain"
    assert evaluate(p) == []  # still broken, but already said within the window
    p.clock.move(seconds=3601)  # type: ignore[attr-defined]
    assert [a.rule for a in evaluate(p)] == ["audit_chain"]  # and said again after it


def test_staff_access_decryption_failures_failure_rate_and_purge_backlog(
    platform: Platform, receiver: HttpReceiver,
) -> None:
    p = platform
    cell = p.cells["us"]
    assert evaluate(p) == []
    with cell.write() as conn:
        cell.audit.record(conn, account_id="acc-1", actor=Actor(ActorKind.STAFF, "staff-7"),
                          action=Action.STAFF_ACCESS_USED, target="execution:e1",
                          at=p.clock.now(), details={"grant": "g1"})
    for _ in range(5):
        with pytest.raises(SealflowError):
            cell.vault.decrypt("acc-1", "executions", "e1", "result", b"\x01not a ciphertext")
    now = p.clock.now()
    with cell.write() as conn:
        for i, (status, age) in enumerate([("failed", 60), ("failed", 60), ("failed", 60),
                                           ("succeeded", 60), ("succeeded", 86400 * 11),
                                           ("succeeded", 86400 * 12),
                                           ("failed", 86400 * 13)]):
            conn.execute(insert(executions).values(
                id=f"e{i}", account_id="acc-1", workflow_id="w", workflow_version=1,
                status=status, trigger_type="manual", trigger_payload="x", run_after=now,
                created_at=now - timedelta(seconds=age),
                finished_at=now - timedelta(seconds=age)))
    fired = {a.rule: a for a in evaluate(p)}
    assert set(fired) == {"staff_access", "decryption_failures", "workflow_failures",
                          "purge_backlog"}
    assert fired["staff_access"].details["staff"] == "staff-7"
    assert fired["decryption_failures"].details["failures"] >= 5
    assert fired["workflow_failures"].details == {"failed": 3, "finished": 4, "rate": 0.75,
                                                  "threshold": 0.5}
    assert fired["purge_backlog"].details["backlog"] == 3
    assert sorted(b["rule"] for b in posted(receiver)) == sorted(fired)
    assert evaluate(p) == []


def test_at_most_n_alerts_per_sink_per_hour(receiver: HttpReceiver) -> None:
    clock = ManualClock()
    sinks = [WebhookAlertSink(kind="webhook", url=receiver.url, secret=SECRET),  # type: ignore[arg-type]
             LogAlertSink(kind="log")]
    dispatcher = Dispatcher(sinks, clock=clock, rate_per_hour=2, ssrf_allow=("127.0.0.1/32",))
    outcomes = []
    for i in range(3):
        alert = Alert("brute_force", f"k{i}", "us", "summary", clock.now())
        outcomes.append(run(dispatcher.send(alert)))
    assert [o["webhook"] for o in outcomes] == ["sent", "sent", "rate_limited"]
    assert len(receiver.accepted) == 2
    clock.move(seconds=3600)
    assert run(dispatcher.send(Alert("brute_force", "k4", "us", "s", clock.now())))[
        "webhook"] == "sent"
    receiver.status = 500
    assert run(dispatcher.send(Alert("brute_force", "k5", "us", "s", clock.now())))[
        "webhook"] == "failed"
    run(dispatcher.aclose())


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


def test_alerts_are_mailed_through_smtp() -> None:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        sink = EmailAlertSink(kind="email", host="127.0.0.1", port=port, starttls=False,  # type: ignore[arg-type]
                              sender="sealflow@example.test",
                              recipients=("ops@example.test",))
        clock = ManualClock()
        dispatcher = Dispatcher([sink], clock=clock, rate_per_hour=5)
        outcome = run(dispatcher.send(Alert("audit_chain", "us", "us", "record 8: edited",
                                            clock.now(), {"problems": ["record 8"]})))
        assert outcome == {"email": "sent"}
        assert len(inbox.messages) == 1
        mail = message_from_bytes(inbox.messages[0])
        assert mail["Subject"] == "[sealflow alert] audit_chain: record 8: edited"
        assert mail["To"] == "ops@example.test"
        assert json.loads(mail.get_payload())["rule"] == "audit_chain"
    finally:
        controller.stop()


def test_alerts_are_mailed_over_starttls_verified_against_the_ca(tmp_path: Path) -> None:
    ca, cert, key = make_certificates(tmp_path / "tls")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True)
    controller.start()
    try:
        sink = EmailAlertSink(kind="email", host="127.0.0.1", port=port, starttls=True,  # type: ignore[arg-type]
                              sender="sealflow@example.test",
                              recipients=("ops@example.test",))
        clock = ManualClock()
        trusted = Dispatcher([sink], clock=clock, rate_per_hour=5, ca_bundle=str(ca))
        alert = Alert("staff_access", "k", "us", "staff access", clock.now())
        assert run(trusted.send(alert)) == {"email": "sent"}
        assert len(inbox.messages) == 1
        untrusted = Dispatcher([sink], clock=clock, rate_per_hour=5)  # public roots only
        assert run(untrusted.send(alert)) == {"email": "failed"}
        assert len(inbox.messages) == 1
    finally:
        controller.stop()
