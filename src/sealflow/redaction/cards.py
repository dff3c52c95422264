"""Payment card numbers (D7: none is stored): 13 to 19 digits, either in one run or in groups
of 3 to 6 separated by single spaces or dashes, with a card issuer's leading digits and a
valid Luhn check digit, and not part of a longer run of digits: a run of digits is judged
whole; in a sequence of groups ("4111 1111 1111 1111 2" or "qty 2 4111111111111111"), the
longest range of whole groups from the left that is a card number is masked.

Ordinary numbers survive: fewer than 13 digits, a leading 0, 1, 7, 8 or 9 (timestamps in
milliseconds, most database ids), a failing check digit (nine random numbers in ten).
"""

from __future__ import annotations

import re

from sealflow.redaction import spans
from sealflow.redaction.prefilter import char_windows

LABEL = "[REDACTED:card]"

# A maximal run of digits with single separators between them, at least 13 characters long.
# Not anchored on the first digit's value: a long run may hold a card in some of its groups.
_RUN = re.compile(r"[0-9](?<![0-9][0-9])(?<![0-9][ -][0-9])(?:[ -]?[0-9]){12,}")
_GROUP = re.compile(r"[0-9]+")
_DIGIT, _SEPARATOR = b"0", b"1"
# Translation for the prefilter: digits -> "0", the separators vanish, anything else -> ".".
_TABLE = bytes(_DIGIT[0] if chr(b).isdigit() and b < 128 else 46 for b in range(256))
_THIRTEEN = _DIGIT * 13
_SCAN_BELOW = 256  # characters: reading a short string once beats translating it


def is_card_number(digits: str) -> bool:
    """Luhn-valid, 13-19 digits, leading digits of a card issuer (2221-2720 Mastercard,
    3 Amex/Diners/JCB, 4 Visa, 5 Mastercard/Maestro, 6 Discover/UnionPay/Maestro)."""
    if not 13 <= len(digits) <= 19 or not digits.isascii() or not digits.isdigit():
        return False
    first = digits[0]
    if first not in "3456" and not (first == "2" and 2221 <= int(digits[:4]) <= 2720):
        return False
    return luhn_valid(digits)


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def find(text: str, data: bytes | None = None) -> list[spans.Span]:
    """Card numbers in `text`. One C pass rules out almost every text: with the separators
    deleted, a card is 13 digits in a row. The runs found there are mapped back to the text
    and only they are read by the regular expression (a scan of all the digits of a text full
    of ids and UUIDs would cost ten times more). `data`: `text` in UTF-8, if at hand."""
    if len(text) < 13:
        return []
    if len(text) < _SCAN_BELOW:
        return [c for run in _RUN.finditer(text) for c in _cards_in_run(run.group(), run.start())]
    raw = text.encode("utf-8", "surrogatepass") if data is None else data
    squeezed = raw.translate(_TABLE, b" -")
    at = squeezed.find(_THIRTEEN)
    if at < 0:
        return []
    windows = []
    mapper = _Unsqueeze(raw)
    while at >= 0:
        end = squeezed.find(b".", at)
        end = len(squeezed) if end < 0 else end
        windows.append((mapper.to_raw(at), mapper.to_raw(end)))
        at = squeezed.find(_THIRTEEN, end)
    out: list[spans.Span] = []
    for start, stop in char_windows(text, raw, windows):
        for run in _RUN.finditer(text, start, stop):
            out += _cards_in_run(run.group(), run.start())
    return out


class _Unsqueeze:
    """Maps offsets of the squeezed bytes (separators deleted) back to the original bytes,
    for increasing offsets, counting the separators skipped on the way (C `bytes.count`)."""

    def __init__(self, raw: bytes) -> None:
        self._raw = raw
        self._raw_pos = self._squeezed_pos = 0

    def _separators(self, start: int, end: int) -> int:
        return self._raw.count(b" ", start, end) + self._raw.count(b"-", start, end)

    def to_raw(self, squeezed: int) -> int:
        raw, n = self._raw, len(self._raw)
        pos = self._raw_pos + (squeezed - self._squeezed_pos)
        skipped = self._separators(self._raw_pos, min(pos, n))
        while skipped:  # each separator skipped pushes the target further right
            new = min(pos + skipped, n)
            skipped = self._separators(pos, new)
            pos = new
        while pos < n and raw[pos] in b" -":
            pos += 1
        self._raw_pos, self._squeezed_pos = pos, squeezed
        return pos


def _cards_in_run(run: str, offset: int) -> list[spans.Span]:
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    if len(groups) == 1:
        return [spans.detected(offset, offset + len(run), LABEL)] if is_card_number(run) else []
    out = []
    i = 0
    while i < len(groups):  # from the left, the longest range of groups that is a card
        best = None
        for j in range(i, len(groups)):
            start, end = groups[j]
            if not (3 <= end - start <= 6 or (i == j and 13 <= end - start <= 19)):
                break
            digits = "".join(run[a:b] for a, b in groups[i : j + 1])
            if len(digits) > 19:
                break
            if is_card_number(digits):
                best = j
        if best is None:
            i += 1
            continue
        start, end = groups[i][0], groups[best][1]
        out.append(spans.detected(offset + start, offset + end, LABEL))
        i = best + 1
    return out
