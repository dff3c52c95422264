"""JSON for stored documents and payloads. One place, so a Secret can never be serialised as
its value: it becomes its redacted form."""

from __future__ import annotations

from typing import Any

import orjson

from sealflow.core.secrets import Secret


def _default(value: Any) -> Any:
    if isinstance(value, Secret):
        return repr(value)
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def dumps_bytes(value: Any) -> bytes:
    return orjson.dumps(value, default=_default)


def loads(text: str | bytes | None) -> Any:
    return None if text is None else orjson.loads(text)
