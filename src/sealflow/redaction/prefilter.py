"""A sampled q-gram filter in front of the automaton, so that masking a large text costs about
the same with 10 or 10,000 secrets.

Why: pyahocorasick walks a pointer trie one character at a time; once the trie of every form
of thousands of secrets outgrows the CPU caches, each character costs a cache miss and the
scan slows down three times or more. This filter reads the text's UTF-8 bytes as machine
words at a fixed stride (C code: `memoryview.cast`) and looks each word up in a set of
integers (C code again); only the few places whose word belongs to some pattern are handed
to the automaton, which stays the judge of what matches.

Why it misses nothing: take a pattern of m bytes and sample q-byte words at every multiple of
a stride s with m >= s + q - 1. Wherever the pattern occurs, some sampled word lies wholly
inside it, at an offset r < s from the pattern's start; so the set holds, for each pattern,
its q-byte slices at offsets 0..s-1, and every occurrence makes at least one sampled word hit.
The occurrence then lies in [word - (s - 1), word + longest pattern).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import compress

_Window = tuple[int, int]
_BLOCK_WORDS = 128


@dataclass(frozen=True)
class _Tier:
    q: int  # bytes per sampled word: 4 or 8 (memoryview formats "I" and "Q")
    stride: int  # a multiple of q
    longest: int  # bytes of the longest pattern in the tier
    keys: frozenset[int]

    def windows(self, data: bytes) -> list[_Window]:
        # No padding copy: a sampled word inside an occurrence ends inside the data, so the
        # few bytes after the last whole word can be left out.
        whole = len(data) - len(data) % self.q
        words = memoryview(data)[:whole].cast("I" if self.q == 4 else "Q")
        if self.stride != self.q:
            words = words[:: self.stride // self.q]
        keys, s, n = self.keys, self.stride, len(data)
        out = []
        # Blocks: `isdisjoint` rules a block out in C, stopping at its first hit; only a block
        # with a hit is walked word by word (still C, but about twice the cost per word).
        for first in range(0, len(words), _BLOCK_WORDS):
            block = words[first : first + _BLOCK_WORDS]
            if keys.isdisjoint(block):
                continue
            hits = compress(range(first, first + len(block)), map(keys.__contains__, block))
            out += [(max(0, i * s - s + 1), min(n, i * s + self.longest)) for i in hits]
        return out


def _tier(patterns: list[bytes], q: int, stride: int) -> _Tier:
    keys = {int.from_bytes(p[r : r + q], sys.byteorder) for p in patterns for r in range(stride)}
    return _Tier(q, stride, max(len(p) for p in patterns), frozenset(keys))


class SampledFilter:
    """Candidate byte windows of a text in which some pattern may occur. Patterns must be at
    least 7 bytes long (forms are at least 8 characters)."""

    MIN_BYTES = 7

    def __init__(self, patterns: Iterable[bytes]) -> None:
        short: list[bytes] = []
        long_: list[bytes] = []
        for p in patterns:
            if len(p) < self.MIN_BYTES:
                raise ValueError("pattern too short for the sampled filter")
            (short if len(p) < 15 else long_).append(p)
        tiers = []
        if short:  # 7..14 bytes: 4-byte words at every 4th byte
            tiers.append(_tier(short, 4, 4))
        if long_:  # 8-byte words, sampled as sparsely as the shortest pattern allows
            shortest = min(len(p) for p in long_)
            stride = next(s for s in (32, 16, 8) if shortest >= s + 7)
            tiers.append(_tier(long_, 8, stride))
        self._tiers = tuple(tiers)

    def windows(self, data: bytes) -> list[_Window]:
        """Sorted, merged [start, end) byte ranges holding every occurrence of a pattern."""
        found = [w for tier in self._tiers for w in tier.windows(data)]
        if not found:
            return []
        found.sort()
        merged = [found[0]]
        for start, end in found[1:]:
            last_start, last_end = merged[-1]
            if start <= last_end:
                merged[-1] = (last_start, max(last_end, end))
            else:
                merged.append((start, end))
        return merged


def char_windows(text: str, data: bytes, windows: list[_Window]) -> list[_Window]:
    """Byte windows of `data` (= `text` in UTF-8, surrogatepass) as character windows of
    `text`, widened to whole characters."""
    if text.isascii():
        return windows
    out: list[_Window] = []
    byte_pos = char_pos = 0  # a known pair of offsets; windows are sorted
    n = len(data)
    for start, end in windows:
        while start > 0 and data[start] & 0xC0 == 0x80:  # continuation byte: back up
            start -= 1
        while end < n and data[end] & 0xC0 == 0x80:
            end += 1
        char_pos += len(data[byte_pos:start].decode("utf-8", "surrogatepass"))
        width = len(data[start:end].decode("utf-8", "surrogatepass"))
        out.append((char_pos, char_pos + width))
        byte_pos = start
    return out
