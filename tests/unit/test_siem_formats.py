"""The bytes a SIEM receives (siem.formats) and the settings that steer delivery and alerts:
RFC 5425 octet counting round-trips, RFC 5424 header fields stay printable, signatures bind
the time and the body, the retry wait doubles up to its cap."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sealflow.config import Settings
from sealflow.siem import formats
from sealflow.siem.delivery import SiemDelivery
from tests.support.clock import ManualClock


def rec(seq: int, body: str = '{"a":1}', action: str = "login.failed") -> formats.Record:
    return formats.Record(seq, "eu", action, "2026-11-29T12:00:00.000000Z", body)


def test_octet_counted_frames_round_trip_whatever_the_body_holds() -> None:
    bodies = ['{"a":1}', '{"note":"12 spaces and\\nnewlines ü"}', '{"x":"' + "é" * 300 + '"}']
    data = formats.syslog_frames([rec(i, b) for i, b in enumerate(bodies, 1)])
    messages, rest = formats.parse_frames(data + b"17 partial")
    assert rest == b"17 partial" and len(messages) == 3
    for message, body in zip(messages, bodies, strict=True):
        assert message.decode().endswith(formats.BOM + body)
        frame = formats.octet_frame(message)
        assert frame.startswith(str(len(message)).encode() + b" ")  # bytes, not characters


def test_header_fields_are_printable_and_structured_data_escaped() -> None:
    text = formats.syslog_message(rec(7, action="bad action\n"), hostname="host name").decode()
    assert text.startswith("<110>1 2026-11-29T12:00:00.000000Z hostname sealflow - badaction ")
    assert '[sealflow@32473 seq="7" region="eu"]' in text
    odd = formats.Record(1, 'e"u]', "x", "-", "{}")
    assert 'region="e\\"u\\]"' in formats.syslog_message(odd).decode()


def test_a_signature_binds_the_time_and_the_body() -> None:
    key = b"k" * 32
    header = formats.signature(key, 1_700_000_000, b"body")
    assert formats.verify_signature(key, header, b"body")
    assert not formats.verify_signature(key, header, b"body!")
    assert not formats.verify_signature(key, header.replace("t=1700000000", "t=1700000001"),
                                        b"body")
    assert not formats.verify_signature(b"x" * 32, header, b"body")
    assert not formats.verify_signature(key, "garbage", b"body")


def test_the_retry_wait_doubles_up_to_its_cap(tmp_path: object) -> None:
    settings = Settings(siem={"retry_min_s": 2, "retry_max_s": 30})
    delivery = SiemDelivery({}, ManualClock(), settings)  # type: ignore[arg-type]
    assert [delivery.backoff(n).total_seconds() for n in (1, 2, 3, 4, 5, 50)] == [
        2, 4, 8, 16, 30, 30]


def test_alert_and_metrics_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="16 characters"):
        Settings(alerts={"sinks": [{"kind": "webhook", "url": "https://a.example",
                                    "secret": "short"}]})
    with pytest.raises(ValidationError):
        Settings(alerts={"sinks": [{"kind": "pager"}]})
    with pytest.raises(ValidationError):
        Settings(alerts={"rules": {"failure_rate": 1.5}})
    with pytest.raises(ValidationError, match="starttls"):  # no SMTP password in clear
        Settings(alerts={"sinks": [{"kind": "email", "host": "smtp.example", "starttls": False,
                                    "username": "alerts", "password": "p" * 20,
                                    "sender": "a@x.example", "recipients": ["o@x.example"]}]})
    s = Settings(metrics={"token": "t" * 40})
    assert "t" * 40 not in repr(s) and s.metrics.token.get_secret_value() == "t" * 40
    assert Settings().metrics.token.get_secret_value() == ""  # off by default
