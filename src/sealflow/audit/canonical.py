"""RFC 8785 JSON Canonicalization Scheme: the one byte form of a record that is hashed and
signed. The `rfc8785` package (Trail of Bits) does the work: keys sorted by UTF-16 code
units, ECMAScript number formatting, no insignificant whitespace."""

from __future__ import annotations

import json
from typing import Any

import rfc8785


class NotCanonical(ValueError):
    """The value cannot be canonicalised (a float NaN/infinity, an integer out of the I-JSON
    range, a non-JSON type)."""


_MAX_INT = 2**53 - 1  # I-JSON: integers beyond it are refused (as rfc8785 does)
_fast_dumps = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
).encode


def _simple(value: Any) -> bool:
    """True when the standard library's JSON output is already the RFC 8785 form: no floats
    (ECMAScript number formatting differs from repr), integers within I-JSON, and ASCII keys
    only (code-point order, which sort_keys uses, is then UTF-16 order). Strings are escaped
    alike by both (only controls, quote and backslash; lower-case \\u00xx)."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return bool(-_MAX_INT <= value <= _MAX_INT)
    if kind is dict:
        return all(type(k) is str and k.isascii() and _simple(v) for k, v in value.items())
    if kind is list:
        return all(_simple(v) for v in value)
    return False


def canonical(value: Any) -> bytes:
    """The RFC 8785 bytes of `value`. The common case (records: strings, integers, nested
    objects) takes the C JSON encoder; anything else goes to `rfc8785`. The unit tests check
    that both paths agree."""
    if _simple(value):
        try:
            return _fast_dumps(value).encode()
        except UnicodeEncodeError:  # a lone surrogate: rfc8785 reports it
            pass
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as err:
        raise NotCanonical(str(err)) from err


def parse(data: str | bytes) -> Any:
    """Parse a canonical document; raises NotCanonical when `data` is not exactly the canonical
    form of what it parses to (so two spellings of one record cannot both verify)."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise NotCanonical(f"not JSON: {err}") from err
    if canonical(value) != raw:
        raise NotCanonical("not in canonical form (RFC 8785)")
    return value
