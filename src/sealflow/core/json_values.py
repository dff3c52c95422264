"""Which decoded values sealflow can store (pure): I-JSON (RFC 7493) integers, exact in every
JSON parser (orjson fails past 64 bits, and OpenAPI bounds past 2**53 lose precision),
strings that are valid Unicode, finite numbers, and nesting no deeper than MAX_DEPTH (orjson
stops at 255). The API, the CLI, webhook ingress and the document check all ask here."""

from __future__ import annotations

import math
from typing import Any

from sealflow.core.expressions import child_path

INT_RANGE = (-(2**53) + 1, 2**53 - 1)
MAX_DEPTH = 64


def storable_problem(value: Any, path: str = "$") -> tuple[str, str] | None:
    """(path, message) of the first value the stores cannot hold, or None. Also used by the
    CLI on what it reads from YAML (where keys can be numbers and values dates)."""
    stack: list[tuple[str, Any, int]] = [(path, value, 1)]
    while stack:
        where, item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return where, f"nests deeper than {MAX_DEPTH} levels"
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return where, f"key {key!r} must be a string (quote it in YAML)"
                if _unencodable(key):
                    return where, "a key is not valid Unicode (lone surrogate)"
                stack.append((child_path(where, key), child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child_path(where, i), child, depth + 1) for i, child in enumerate(item))
        else:
            problem = scalar_problem(item)
            if problem is not None:
                return where, problem
    return None


def scalar_problem(item: Any) -> str | None:
    """Why a non-container value cannot be stored, or None."""
    if isinstance(item, str):
        return "not valid Unicode (lone surrogate)" if _unencodable(item) else None
    if isinstance(item, bool) or item is None:
        return None
    if isinstance(item, int):
        if not INT_RANGE[0] <= item <= INT_RANGE[1]:
            return "integer outside -(2**53-1)..2**53-1 (I-JSON); send it as a string"
        return None
    if isinstance(item, float):
        return None if math.isfinite(item) else f"{item} is not a JSON number"
    return f"a {type(item).__name__} is not a JSON value (quote it in YAML)"


def _unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False
