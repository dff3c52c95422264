"""The forms a secret value takes on the wire (S5), as literal strings to look for.

Pure functions of the value: the masker puts every form in one automaton, so a secret is
masked whether a connector sent it raw, base64'd in a header, percent-encoded in a query,
escaped inside a JSON body or hex-dumped in a debug line.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from urllib.parse import quote, quote_plus

# Secrets shorter than this are refused when an authentication is saved (core's
# MIN_SECRET_CHARS); no form shorter than it is ever looked for, so masking cannot eat
# ordinary words.
MIN_PATTERN_CHARS = 8

# Byte offset k of the secret inside a longer base64 stream -> index of the first output
# character that depends on secret bits only. Characters before it (and the last one or two)
# mix in the neighbours' bits, so they differ from stream to stream and are left out.
_B64_FIRST_STABLE = (0, 2, 3)

_PERCENT_HEX = re.compile(r"%[0-9A-F]{2}")
_JSON_UHEX = re.compile(r"\\u[0-9a-f]{4}")
_Encoder = Callable[[bytes], bytes]
_B64_ALPHABETS: tuple[_Encoder, ...] = (base64.b64encode, base64.urlsafe_b64encode)


def _utf8(value: str) -> bytes:
    # surrogatepass: a lone surrogate (legal in a Python str, e.g. from JSON "\ud800") must not
    # make a secret unmaskable.
    return value.encode("utf-8", "surrogatepass")


def base64_forms(raw: bytes) -> set[str]:
    """Standalone encodings (padded and not) and, for each byte offset mod 3 inside a longer
    stream, the characters fixed by the secret alone; standard and URL-safe alphabets."""
    out: set[str] = set()
    n = len(raw)
    for encode in _B64_ALPHABETS:
        full = encode(raw).decode("ascii")
        out.add(full)
        out.add(full.rstrip("="))
        for k, first in enumerate(_B64_FIRST_STABLE):
            last = (8 * (k + n)) // 6  # characters [first, last) hold secret bits only
            out.add(encode(b"\0" * k + raw + b"\0\0").decode("ascii")[first:last])
    return out


def percent_forms(raw: bytes) -> set[str]:
    """URL and form encodings: everything escaped, `/` kept (paths), `+` for spaces (forms,
    HTML's and Python's), JavaScript's encodeURIComponent; each with lower-case hex too."""
    out = {
        quote(raw, safe=""),
        quote(raw, safe="/"),
        quote_plus(raw, safe=""),
        quote_plus(raw, safe="*").replace("~", "%7E"),  # WHATWG urlencoded
        quote(raw, safe="!'()*~"),  # encodeURIComponent
    }
    out |= {_PERCENT_HEX.sub(lambda m: m.group().lower(), f) for f in out}
    return out


def json_forms(value: str) -> set[str]:
    """JSON string bodies (without quotes) as common encoders write them: ASCII-only or not,
    `/` escaped as `\\/` (PHP), `<>&` as `\\u003c…` (Go), `\\u` hex in upper case (JS)."""
    ascii_ = json.dumps(value)[1:-1]
    utf = json.dumps(value, ensure_ascii=False)[1:-1]
    html = utf.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    out = {ascii_, utf, html}
    out |= {f.replace("/", "\\/") for f in out}
    out |= {_JSON_UHEX.sub(lambda m: "\\u" + m.group()[2:].upper(), f) for f in out}
    return out


def line_forms(value: str) -> set[str]:
    """Each line of a multi-line secret (PEM keys) on its own: wire formats re-wrap them."""
    if "\n" not in value and "\r" not in value:
        return set()
    return {line.strip() for line in value.splitlines()}


def wire_forms(value: str) -> frozenset[str]:
    """Every literal form of `value` that masking looks for, each at least
    MIN_PATTERN_CHARS long. Empty for a value shorter than that."""
    if len(value) < MIN_PATTERN_CHARS:
        return frozenset()
    raw = _utf8(value)
    forms = {value}
    forms |= base64_forms(raw)
    forms.add(binascii.hexlify(raw).decode("ascii"))
    forms.add(binascii.hexlify(raw).decode("ascii").upper())
    forms |= percent_forms(raw)
    forms |= json_forms(value)
    forms |= line_forms(value)
    return frozenset(f for f in forms if len(f) >= MIN_PATTERN_CHARS)


def basic_pair_value(username: str, password: str) -> str:
    """What a `Basic` Authorization header encodes: its base64 is among the wire forms."""
    return f"{username}:{password}"
