"""The automaton and its sampled filter against a naive model: for random secrets over a tiny
alphabet (so that matches overlap, nest and touch all the time) and random text, including
multi-byte characters, both paths find exactly the occurrences a brute-force search finds,
and masking merges overlapping ones under the longest."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealflow.redaction import Redactor, spans
from sealflow.redaction.forms import wire_forms
from sealflow.redaction.masker import KnownValues
from sealflow.redaction.prefilter import SampledFilter

SETTINGS = settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
ALPHABET = "abé😀"


def naive(text: str, secrets: list[tuple[str, str]]) -> set[spans.Span]:
    labels: dict[str, str] = {}
    for name, value in secrets:
        for form in wire_forms(value):
            labels.setdefault(form, f"[REDACTED:{name}]")
    found = set()
    for form, label in labels.items():
        at = text.find(form)
        while at != -1:
            found.add(spans.known(at, at + len(form), label))
            at = text.find(form, at + 1)
    return found


@st.composite
def case(draw: st.DrawFn) -> tuple[list[tuple[str, str]], str]:
    values = draw(st.lists(st.text(ALPHABET, min_size=8, max_size=50), min_size=1, max_size=5))
    secrets = [(f"s{i}", v) for i, v in enumerate(values)]
    pieces = draw(
        st.lists(st.one_of(st.text(ALPHABET, max_size=20), st.sampled_from(values)), max_size=12)
    )
    return secrets, "".join(pieces)


@SETTINGS
@given(case())
def test_both_paths_find_what_brute_force_finds(c: tuple[list[tuple[str, str]], str]) -> None:
    secrets, text = c
    direct, filtered = KnownValues(prefilter_min_chars=10**9), KnownValues(prefilter_min_chars=0)
    for name, value in secrets:
        direct.add(name, value)
        filtered.add(name, value)
    expected = naive(text, secrets)

    assert set(direct.find(text)) == expected
    assert set(filtered.find(text)) == expected
    assert spans.apply(text, filtered.find(text)) == spans.apply(text, sorted(expected))


@SETTINGS
@given(st.lists(st.binary(min_size=7, max_size=80), min_size=1, max_size=6), st.data())
def test_sampled_filter_never_misses(patterns: list[bytes], data: st.DataObject) -> None:
    """Every occurrence of every pattern lies inside a window, at any offset, whatever the
    stride the pattern lengths allow (4, 8, 16 or 32 bytes)."""
    filt = SampledFilter(patterns)
    for _ in range(5):
        p = data.draw(st.sampled_from(patterns))
        left = data.draw(st.binary(max_size=70))
        text = left + p + data.draw(st.binary(max_size=70))
        windows = filt.windows(text)
        start, end = len(left), len(left) + len(p)
        assert any(a <= start and end <= b for a, b in windows), (windows, start, end)


def test_merging_keeps_the_longest_label_and_separates_touching_spans() -> None:
    text = "0123456789"
    found = [
        spans.known(2, 6, "[short]"),
        spans.known(3, 9, "[long]"),
        spans.detected(9, 10, "[touching]"),
    ]
    assert spans.apply(text, found) == "01[long][touching]"
    # On equal length a known value names the span, not a detector.
    assert spans.apply(text, [spans.detected(0, 4, "[d]"), spans.known(0, 4, "[k]")]) == (
        "[k]456789"
    )


def test_secrets_join_lazily_and_are_counted() -> None:
    r = Redactor()
    assert r.text("token-aaaa-bbbb and token-cccc-dddd") == "token-aaaa-bbbb and token-cccc-dddd"
    r.add_secret("first", "token-aaaa-bbbb")
    assert r.text("token-aaaa-bbbb and token-cccc-dddd") == "[REDACTED:first] and token-cccc-dddd"
    r.add_secret("oauth", "token-cccc-dddd")  # an access token arriving mid-run
    assert r.text("token-aaaa-bbbb and token-cccc-dddd") == (
        "[REDACTED:first] and [REDACTED:oauth]"
    )
    r.add_secret("again", "token-aaaa-bbbb")  # same value: the first name stays
    r.add_secret("short", "1234567")  # refused when saved: never masked
    assert r.secret_count == 2
    assert r.text("token-aaaa-bbbb 1234567") == "[REDACTED:first] 1234567"


def test_large_text_with_many_secrets_and_multibyte_characters() -> None:
    r = Redactor()
    values = [f"sekrit-{i:05d}-é-{'x' * (i % 40)}" for i in range(300)]
    for i, v in enumerate(values):
        r.add_secret(f"a{i}", v)
    filler = "日本語のテキスト and plain words, numbers 12345; " * 400
    text = filler + " ".join(values[::7]) + filler + values[-1]
    out = r.text(text)
    assert all(v not in out for v in values)
    assert out.startswith(filler) and out.endswith("[REDACTED:a299]")
    assert out.count("[REDACTED:") == len(values[::7]) + 1


def test_sampled_filter_refuses_patterns_it_could_miss() -> None:
    with pytest.raises(ValueError, match="too short"):
        SampledFilter([b"123456"])
