"""Logging set-up: JSON lines on stderr through structlog and, optionally (`sealflow serve`
and `sealflow worker` turn it on, settings.log_files), in daily files under the log directory
(D3). Every event, ours and those of the libraries (uvicorn's tracebacks included), passes
`redact_event` last, just before it is rendered: the redactor in scope (a running
execution's, else the default rules) masks its message, its fields and its formatted
exception (S5). Files and stderr get the very same rendered line.

Log files: `<log dir>/sealflow-YYYY-MM-DD.jsonl`, one JSON object per line, the day in UTC
of the moment the line was written; mode 0600 in a 0700 directory (they carry pseudonymised
client addresses). The purge (services/purge.py) deletes a file once its last possible line
is older than the keep period (30 days). A file replaced under the same name (an erasure
that scrubbed it and renamed the result in place) is reopened at the next line, never
written through the old handle.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from sealflow.redaction import scope

_KEEP = frozenset({"level", "logger", "timestamp"})


def redact_event(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    redactor = scope.current()
    out: EventDict = {}
    for key, value in event.items():
        if key in _KEEP:
            out[key] = value
        elif isinstance(value, str | int | float | bool | None | list | dict):
            # Field-name rules see the key; the key itself may come back masked.
            out[key] = next(iter(redactor.value({key: value}).values()))
        else:
            out[key] = redactor.text(str(value))
    return out


LOG_FILE_PREFIX = "sealflow-"
LOG_FILE_SUFFIX = ".jsonl"
_LOG_FILE = re.compile(r"^sealflow-(\d{4})-(\d{2})-(\d{2})\.jsonl$")


def log_file_name(day: date) -> str:
    """The name of the log file of a UTC day: sealflow-YYYY-MM-DD.jsonl."""
    return f"{LOG_FILE_PREFIX}{day.isoformat()}{LOG_FILE_SUFFIX}"


def log_file_day(name: str) -> date | None:
    """The UTC day of a log file's name; None for any other file."""
    match = _LOG_FILE.match(name)
    if match is None:
        return None
    try:
        return date(*(int(g) for g in match.groups()))
    except ValueError:
        return None


class DailyFileHandler(logging.Handler):
    """Appends each formatted record as one line to the file of its UTC day, and to `also`
    (stderr) when given: formatted (and so redacted) once for both."""

    def __init__(self, directory: Path, also: IO[str] | None = None) -> None:
        super().__init__()
        self.directory = directory
        self.also = also
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._path: Path | None = None
        self._stream: IO[str] | None = None
        self._ident: tuple[int, int] | None = None

    def _open(self, path: Path) -> IO[str]:
        self._close_stream()
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        stream = os.fdopen(fd, "a", encoding="utf-8")
        st = os.fstat(fd)
        self._path, self._stream, self._ident = path, stream, (st.st_dev, st.st_ino)
        return stream

    def _current(self, created: float) -> IO[str]:
        day = datetime.fromtimestamp(created, UTC).date()
        path = self.directory / log_file_name(day)
        if self._stream is None or path != self._path:
            return self._open(path)
        try:  # replaced or removed behind our back (an erasure's scrub): reopen by name
            st = os.stat(path)
            if (st.st_dev, st.st_ino) != self._ident:
                return self._open(path)
        except FileNotFoundError:
            return self._open(path)
        return self._stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
            if self.also is not None:
                self.also.write(line)
                self.also.flush()
            stream = self._current(record.created)
            stream.write(line)
            stream.flush()
        except Exception:
            self.handleError(record)

    def _close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()
        self._stream = self._path = self._ident = None

    def close(self) -> None:
        self.acquire()
        try:
            self._close_stream()
        finally:
            self.release()
        super().close()


def configure_logging(level: str = "info", log_dir: Path | None = None) -> None:
    """Logs to stderr and, with `log_dir`, to its daily files too (same lines)."""
    shared: list[Processor] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            redact_event,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler: logging.Handler = (logging.StreamHandler(sys.stderr) if log_dir is None
                                else DailyFileHandler(log_dir, also=sys.stderr))
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, DailyFileHandler):
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)  # one line per region per start
    # httpx logs every request's full URL, query string included, where an api_key
    # authentication may sit; the http connector logs its own line without the query.
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
