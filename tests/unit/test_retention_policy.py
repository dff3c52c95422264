"""Retention policies (D3, services/retention.py): durations, limits, errors naming the field
and the limit; and the server log files (sealflow.logs): one a day, redacted like stderr,
reopened when replaced."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import structlog

from sealflow.core.errors import InvalidInput
from sealflow.logs import DailyFileHandler, configure_logging, log_file_day, log_file_name
from sealflow.services.purge import plan
from sealflow.services.retention import (
    RetentionPolicy,
    format_duration,
    normalize,
    parse_duration,
)


@pytest.mark.parametrize(("text", "value"), [
    ("10d", timedelta(days=10)), ("36h", timedelta(hours=36)),
    ("1d12h", timedelta(hours=36)), (" 2D ", timedelta(days=2)),
    ("", None), ("d", None), ("10", None), ("1.5d", None), ("-1d", None), ("10m", None),
])
def test_durations(text: str, value: timedelta | None) -> None:
    assert parse_duration(text) == value


def test_formatting_round_trips() -> None:
    for hours in (24, 36, 240, 720, 25):
        value = timedelta(hours=hours)
        assert parse_duration(format_duration(value)) == value
    assert format_duration(timedelta(days=10)) == "10d"


def test_defaults_and_normal_form() -> None:
    assert RetentionPolicy.from_settings(None) == RetentionPolicy(timedelta(days=10),
                                                                  timedelta(days=30))
    assert normalize({}) == {"executions": "10d", "logs": "30d"}
    assert normalize({"executions": "24h", "logs": None}) == {"executions": "1d",
                                                               "logs": "30d"}


@pytest.mark.parametrize(("section", "path", "words"), [
    ({"executions": "23h"}, "$.retention.executions", "at least 24h"),
    ({"logs": "1h"}, "$.retention.logs", "at least 24h"),
    ({"executions": "10d1h"}, "$.retention.executions", "at most 10d"),
    ({"logs": "30d1h"}, "$.retention.logs", "at most 30d"),
    ({"logs": 30}, "$.retention.logs", "duration"),
    ({"data": "1d"}, "$.retention.data", "unknown field"),
    ("10d", "$.retention", "must be an object"),
])
def test_out_of_limits_is_refused_naming_field_and_limit(section: object, path: str,
                                                         words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        RetentionPolicy.from_settings(section)
    assert [(i.path, words in i.message) for i in err.value.issues] == [(path, True)]
    assert err.value.retryable is False


def test_what_each_policy_plans() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 11, 29, tzinfo=UTC)
    assert [k for k, _, _ in plan(RetentionPolicy(), now)] == ["rows", "execution_data"]
    same = RetentionPolicy(timedelta(days=1), timedelta(days=1))
    assert [k for k, _, _ in plan(same, now)] == ["rows"]
    short_logs = RetentionPolicy(timedelta(days=10), timedelta(days=2))
    assert plan(short_logs, now) == [("rows", now - timedelta(days=10), None),
                                     ("step_logs", now - timedelta(days=2),
                                      now - timedelta(days=10))]


def test_log_file_names() -> None:
    assert log_file_name(date(2026, 1, 2)) == "sealflow-2026-01-02.jsonl"
    assert log_file_day("sealflow-2026-01-02.jsonl") == date(2026, 1, 2)
    for other in ("sealflow-2026-02-30.jsonl", "sealflow-2026-01-02.jsonl.gz", "x.jsonl"):
        assert log_file_day(other) is None


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for h in root.handlers:
        if isinstance(h, DailyFileHandler):
            h.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def test_log_files_get_the_redacted_lines_of_stderr(tmp_path: Path, restore_logging: None,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    canary = "canary-pw-8c1e27f0d9"
    configure_logging("info", tmp_path / "logs")
    structlog.get_logger("sealflow.access").info("request", path="/v1/x", password=canary)
    [file] = list((tmp_path / "logs").iterdir())
    assert log_file_day(file.name) is not None
    assert oct(file.stat().st_mode & 0o777) == "0o600"
    assert oct((tmp_path / "logs").stat().st_mode & 0o777) == "0o700"
    line = file.read_text().strip()
    assert canary not in line and json.loads(line)["path"] == "/v1/x"
    assert capsys.readouterr().err.strip() == line  # the same line on stderr


def test_a_file_replaced_under_its_name_is_reopened(tmp_path: Path) -> None:
    handler = DailyFileHandler(tmp_path, also=io.StringIO())
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.Logger("t")
    logger.addHandler(handler)
    logger.warning("one")
    [path] = list(tmp_path.iterdir())
    scrubbed = tmp_path / "scrubbed.tmp"
    scrubbed.write_text("one (scrubbed)\n")
    scrubbed.replace(path)  # an erasure rewrote the day's file
    logger.warning("two")
    handler.close()
    assert path.read_text() == "one (scrubbed)\ntwo\n"
