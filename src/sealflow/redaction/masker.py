"""Known-value masking: one Aho-Corasick automaton (pyahocorasick) of every secret in scope
and every wire form of it (forms.py), built lazily: adding a secret (a token received at run
time included) only marks the automaton stale; the next search rebuilds it once.

Large texts go through the sampled filter first (prefilter.py) and the automaton reads only
the windows it returns; small ones go straight to the automaton. Both give the same spans.
"""

from __future__ import annotations

from dataclasses import dataclass

import ahocorasick

from sealflow.redaction import spans
from sealflow.redaction.forms import wire_forms
from sealflow.redaction.prefilter import SampledFilter, char_windows

# Below this many characters the filter's fixed costs (encoding, a memoryview, a set walk)
# are not worth it: a 2 KB string is a few microseconds of automaton.
PREFILTER_MIN_CHARS = 4096


@dataclass(frozen=True)
class _Compiled:
    version: int  # of the forms it was built from
    automaton: ahocorasick.Automaton
    prefilter: SampledFilter


def label(name: str) -> str:
    return f"[REDACTED:{name}]"


class KnownValues:
    """The secret values of one execution and their forms. A search may run in another
    thread than an add (a log line written while a token arrives): it then sees the secrets
    added before it started, and the next search sees the rest."""

    def __init__(self, *, prefilter_min_chars: int = PREFILTER_MIN_CHARS) -> None:
        self._labels: dict[str, str] = {}  # form -> replacement; the first name to add it wins
        self._values: set[str] = set()
        self._version = 0  # bumped after each add that brings new forms
        self._compiled: _Compiled | None = None
        self._prefilter_min_chars = prefilter_min_chars

    def add(self, name: str, value: str) -> None:
        forms = wire_forms(value)
        if not forms:  # shorter than MIN_PATTERN_CHARS: refused when saved, never masked
            return
        self._values.add(value)
        replacement = label(name)
        fresh = False
        for form in forms:
            if form not in self._labels:
                self._labels[form] = replacement
                fresh = True
        if fresh:
            self._version += 1

    @property
    def count(self) -> int:
        """Distinct secret values added (not forms)."""
        return len(self._values)

    def _compile(self) -> _Compiled:
        compiled = self._compiled
        if compiled is None or compiled.version != self._version:
            version = self._version  # read before the forms: a later add makes it stale
            labels = list(self._labels.items())  # a copy: adds may go on meanwhile
            automaton = ahocorasick.Automaton()
            for form, replacement in labels:
                automaton.add_word(form, (len(form), replacement))
            automaton.make_automaton()
            prefilter = SampledFilter(f.encode("utf-8", "surrogatepass") for f, _ in labels)
            compiled = self._compiled = _Compiled(version, automaton, prefilter)
        return compiled

    def find(self, text: str, data: bytes | None = None) -> list[spans.Span]:
        """Every occurrence of every form in `text`, overlapping ones included. `data`, if
        given, is `text` in UTF-8 (surrogatepass), shared with the other finders."""
        if not self._labels or len(text) < 8:
            return []
        compiled = self._compile()
        if len(text) < self._prefilter_min_chars:
            return _scan(compiled.automaton, text, 0)
        if data is None:
            data = text.encode("utf-8", "surrogatepass")
        found: list[spans.Span] = []
        for start, end in char_windows(text, data, compiled.prefilter.windows(data)):
            found += _scan(compiled.automaton, text[start:end], start)
        return found


def _scan(automaton: ahocorasick.Automaton, text: str, offset: int) -> list[spans.Span]:
    out = []
    for last, (length, replacement) in automaton.iter(text):
        end = offset + last + 1
        out.append(spans.known(end - length, end, replacement))
    return out
