"""Spans to mask and how overlapping ones combine. Every finder (known values, token
detectors, card numbers) reports spans; one function merges them and writes the result."""

from __future__ import annotations

from typing import NamedTuple


class Span(NamedTuple):
    start: int
    end: int
    label: str  # what replaces the merged span, e.g. "[REDACTED:billing api]"
    # Which label a merged span keeps: the longest match wins; on equal length a known value
    # (weight odd) beats a detector, so a stored token is named by its authentication.
    weight: int


def known(start: int, end: int, label: str) -> Span:
    return Span(start, end, label, 2 * (end - start) + 1)


def detected(start: int, end: int, label: str) -> Span:
    return Span(start, end, label, 2 * (end - start))


def apply(text: str, spans: list[Span]) -> str:
    """`text` with each group of overlapping spans replaced by the label of its heaviest
    member. Spans that only touch stay apart; characters outside every span are kept."""
    if not spans:
        return text
    spans.sort()
    out: list[str] = []
    pos = 0
    start, end, label, weight = spans[0]
    for s in spans[1:]:
        if s.start < end:  # overlaps the group: widen it
            end = max(end, s.end)
            if s.weight > weight:
                label, weight = s.label, s.weight
            continue
        out += (text[pos:start], label)
        pos = end
        start, end, label, weight = s
    out += (text[pos:start], label, text[end:])
    return "".join(out)
