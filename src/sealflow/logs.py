"""Logging set-up: JSON lines on stderr through structlog. Every event, ours and those of
the libraries (uvicorn's tracebacks included), passes `redact_event` last, just before it is
rendered: the redactor in scope (a running execution's, else the default rules) masks its
message, its fields and its formatted exception (S5)."""

from __future__ import annotations

import logging
import sys

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


def configure_logging(level: str = "info") -> None:
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
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
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
