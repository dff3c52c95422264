"""SIEM streaming of an account's audit trail (siem/), in-process over real SQLite files and
real TLS receivers on 127.0.0.1: a signed HTTPS webhook gets every record of its account,
in order, none of another account's, and catches up after being down; a syslog-over-TLS
receiver gets RFC 5425 octet-counted RFC 5424 messages carrying the canonical records."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from sealflow.audit.records import Action
from sealflow.bootstrap import Platform, build_platform
from sealflow.config import RegionSettings, Settings
from sealflow.core.errors import InvalidInput, LimitExceeded, NotFound
from sealflow.db.tables import audit_records
from sealflow.db.tables_monitoring import audit_sinks
from sealflow.services import accounts
from sealflow.services.accounts import Caller
from sealflow.siem import formats, sinks
from tests.support.clock import ManualClock
from tests.support.receivers import (
    HttpReceiver,
    make_certificates,
    start_http_receiver,
    start_syslog_receiver,
)


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_certificates(tmp_path / "tls")


def make_platform(tmp_path: Path, ca: Path, allow: tuple[str, ...] = ("127.0.0.1/32",)
                  ) -> Platform:
    settings = Settings(data_dir=tmp_path / "data", regions={"us": RegionSettings()},
                        ssrf_allow=allow, outbound_ca_bundle=ca,
                        siem={"batch_size": 7, "retry_min_s": 10, "retry_max_s": 40})
    return build_platform(settings, clock=ManualClock())


LOOP: list[asyncio.AbstractEventLoop] = []


def run(coro: Any) -> Any:
    """Everything of one test on one event loop (the outbound client belongs to it)."""
    return LOOP[-1].run_until_complete(coro)


@pytest.fixture(autouse=True)
def loop() -> Iterator[None]:
    LOOP.append(asyncio.new_event_loop())
    yield
    LOOP.pop().close()


@pytest.fixture
def platform(tmp_path: Path, certs: tuple[Path, Path, Path]) -> Iterator[Platform]:
    p = make_platform(tmp_path, certs[0])
    yield p
    close(p)


def close(p: Platform) -> None:
    if p.monitor is not None:
        run(p.monitor.siem.stop())
    p.cells.dispose()


@pytest.fixture
def receiver(certs: tuple[Path, Path, Path]) -> Iterator[HttpReceiver]:
    r = start_http_receiver(certs[1], certs[2])
    yield r
    r.close()


def admin(p: Platform, name: str) -> Caller:
    account, _ = accounts.create_account(p.cells, p.clock, name=name, region="us")
    return Caller(region="us", account_id=account.id, token_id="t", role="admin",
                  user_id=f"user-{name}")


def record(p: Platform, who: Caller, n: int) -> None:
    cell = p.cells["us"]
    with cell.write() as conn:
        for i in range(n):
            cell.audit.record(conn, account_id=who.account_id, actor=who.actor,
                              action=Action.WORKFLOW_CHANGED, target=f"workflow:{i}",
                              at=p.clock.now(), details={"i": i})


def account_records(p: Platform, account_id: str) -> list[str]:
    with p.cells["us"].read() as conn:
        return list(conn.execute(select(audit_records.c.record)
                                 .where(audit_records.c.account == account_id)
                                 .order_by(audit_records.c.seq)).scalars())


def deliver(p: Platform) -> int:
    assert p.monitor is not None
    return int(run(p.monitor.siem.run_once()))


def test_a_webhook_sink_gets_every_record_of_its_account_in_order_and_catches_up(
    platform: Platform, receiver: HttpReceiver,
) -> None:
    p = platform
    a, b = admin(p, "a"), admin(p, "b")
    record(p, a, 5)
    record(p, b, 4)
    made = sinks.create(p.cells["us"], p.clock, a, name="siem", kind="webhook",
                        url=receiver.url)
    assert made.secret and made.view.fingerprint and made.secret not in str(made.view)
    # The URL is sealed at rest and shown as scheme and host only (a collector's URL may
    # carry its credential in the path or query).
    shown = urlsplit(receiver.url)
    assert made.view.destination == f"{shown.scheme}://{shown.netloc}/…"
    with p.cells["us"].read() as conn:
        stored = conn.execute(select(audit_sinks.c.config)).scalar_one()
    assert shown.path not in stored and shown.netloc not in stored
    record(p, b, 3)
    record(p, a, 6)
    first = len(account_records(p, a.account_id))  # 5 + the sink's creation + 6 (+ others')
    assert first >= 12
    assert deliver(p) == first

    receiver.status = 503  # the SIEM goes down
    record(p, a, 4)
    assert deliver(p) == 0
    view = sinks.get(p.cells["us"], a, made.view.id)
    assert view.failures == 1 and view.last_error and view.last_error.startswith("http_503")
    receiver.status = 200
    assert deliver(p) == 0  # backing off: not retried before next_attempt_at
    p.clock.move(seconds=11)  # type: ignore[attr-defined]
    assert deliver(p) == 4

    lines = [line for post in receiver.accepted for line in post.body.decode().splitlines()]
    assert lines == account_records(p, a.account_id)  # all, in order, once, none of b's
    assert all(json.loads(line)["account_id"] == a.account_id for line in lines)
    for post in receiver.accepted + receiver.refused:
        assert formats.verify_signature(made.secret.encode(),
                                        post.headers["x-sealflow-signature"], post.body)
        assert not formats.verify_signature(b"another key" * 3,
                                            post.headers["x-sealflow-signature"], post.body)
        assert post.headers["content-type"] == "application/x-ndjson"
    assert len(receiver.accepted) == -(-first // 7) + 1  # batches of 7, then the 4 after
    final = sinks.get(p.cells["us"], a, made.view.id)
    assert (final.failures, final.delivered, final.last_error) == (0, first + 4, None)


def test_a_syslog_sink_gets_octet_counted_rfc5424_frames_over_tls(
    platform: Platform, certs: tuple[Path, Path, Path],
) -> None:
    p = platform
    syslog = start_syslog_receiver(certs[1], certs[2])
    try:
        a = admin(p, "a")
        made = sinks.create(p.cells["us"], p.clock, a, name="syslog", kind="syslog",
                            host="127.0.0.1", port=syslog.port)
        assert made.secret is None
        record(p, a, 9)
        expected = account_records(p, a.account_id)
        assert deliver(p) == len(expected) >= 10
        for _ in range(50):  # the receiver thread reads what was written
            messages, rest = formats.parse_frames(syslog.received())
            if len(messages) == len(expected):
                break
            time.sleep(0.05)
        assert rest == b""
        assert len(messages) == len(expected)
        for message, body in zip(messages, expected, strict=True):
            text = message.decode()
            seq = json.loads(body)["seq"]
            assert text.startswith("<110>1 ")
            assert f'[sealflow@32473 seq="{seq}" region="us"]' in text
            assert text.endswith(formats.BOM + body)
        assert syslog.connections == -(-len(expected) // 7)  # batches of 7
    finally:
        syslog.close()


def test_the_ssrf_guard_applies_to_sinks(tmp_path: Path, certs: tuple[Path, Path, Path],
                                         receiver: HttpReceiver) -> None:
    p = make_platform(tmp_path, certs[0], allow=())
    try:
        a = admin(p, "a")
        made = sinks.create(p.cells["us"], p.clock, a, name="siem", kind="webhook",
                            url=receiver.url)
        assert deliver(p) == 0
        view = sinks.get(p.cells["us"], a, made.view.id)
        assert view.last_error and view.last_error.startswith("ssrf_blocked")
        assert view.cursor_seq == 0 and receiver.accepted == receiver.refused == []
    finally:
        close(p)


def test_a_sink_test_reaches_the_receiver_and_reports_a_failure(
    platform: Platform, receiver: HttpReceiver,
) -> None:
    p = platform
    a = admin(p, "a")
    made = sinks.create(p.cells["us"], p.clock, a, name="siem", kind="webhook",
                        url=receiver.url, from_start=False)
    assert p.monitor is not None
    ok = run(p.monitor.siem.test(p.cells["us"], a.account_id, made.view.id))
    assert ok.ok and json.loads(receiver.accepted[0].body)["type"] == "sealflow.audit_sink.test"
    receiver.status = 500
    bad = run(p.monitor.siem.test(p.cells["us"], a.account_id, made.view.id))
    assert (bad.ok, bad.code) == (False, "http_500")
    assert sinks.get(p.cells["us"], a, made.view.id).cursor_seq == made.view.cursor_seq
    other = admin(p, "b")
    with pytest.raises(NotFound):
        run(p.monitor.siem.test(p.cells["us"], other.account_id, made.view.id))


def test_bad_sinks_are_refused_naming_the_field(platform: Platform) -> None:
    p = platform
    a = admin(p, "a")
    cell = p.cells["us"]
    cases = [
        ({"kind": "webhook", "url": "http://siem.example/in"}, "$.url"),
        ({"kind": "webhook", "url": "https://u:p@siem.example/in"}, "$.url"),
        ({"kind": "webhook"}, "$.url"),
        ({"kind": "syslog"}, "$.host"),
        ({"kind": "syslog", "host": "bad host!"}, "$.host"),
        ({"kind": "syslog", "host": "siem.example", "url": "https://x"}, "$.url"),
        ({"kind": "carrier-pigeon"}, "$.kind"),
    ]
    for kwargs, path in cases:
        with pytest.raises(InvalidInput) as err:
            sinks.create(cell, p.clock, a, name="x", **kwargs)  # type: ignore[arg-type]
        assert path in [i.path for i in err.value.issues], kwargs
    for i in range(5):
        sinks.create(cell, p.clock, a, name=f"s{i}", kind="syslog", host="siem.example")
    with pytest.raises(LimitExceeded) as limit:
        sinks.create(cell, p.clock, a, name="six", kind="syslog", host="siem.example")
    assert limit.value.limit == "siem.max_sinks_per_account"
    views = sinks.list_sinks(cell, a)
    assert [v.destination for v in views] == ["siem.example:6514"] * 5
    sinks.delete_sink(cell, p.clock, a, views[0].id)
    with pytest.raises(NotFound):
        sinks.delete_sink(cell, p.clock, admin(p, "b"), views[1].id)
    actions = [json.loads(r)["action"] for r in account_records(p, a.account_id)]
    assert actions.count("audit_sink.created") == 5 and actions[-1] == "audit_sink.deleted"
