"""The redactor in scope (S5): a running execution's own (its account's rules plus every
secret the run has touched), else STATIC (the default rules and detectors). The log processor
(logs.py) and the API's error handler read it, so a line logged while a run is in progress is
masked with that run's secrets too."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from sealflow.redaction.redactor import STATIC, Redactor

_current: ContextVar[Redactor | None] = ContextVar("sealflow_redactor", default=None)


def current() -> Redactor:
    return _current.get() or STATIC


@contextmanager
def using(redactor: Redactor) -> Iterator[Redactor]:
    """Within the block (and the tasks it starts), `current()` is `redactor`."""
    token = _current.set(redactor)
    try:
        yield redactor
    finally:
        _current.reset(token)
