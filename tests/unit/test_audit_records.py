"""Audit records: RFC 8785 canonical JSON (the RFC's own examples), the record body, the
keyed pseudonyms, the checkpoint policy, and the signing key file."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from sealflow.audit.canonical import NotCanonical, canonical, parse
from sealflow.audit.log import CheckpointPolicy
from sealflow.audit.records import SYSTEM, Action, AuditEvent, parse_time, pseudonym
from sealflow.audit.signing import AuditKeyError, Signer, Verifier, key_path

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_rfc8785_section_3_2_2_example() -> None:
    source = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
              ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
              ' "literals": [null, true, false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,'
                '1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical(json.loads(source)).decode() == expected


def test_rfc8785_sorts_keys_by_utf16_code_units() -> None:
    keys = ["\u20ac", "\r", "\ufb33", "1", "\U0001f600", "\u0080", "\u00f6"]
    out = json.loads(canonical({k: i for i, k in enumerate(keys)}))
    assert list(out) == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def test_parse_accepts_only_the_canonical_spelling() -> None:
    assert parse('{"a":1,"b":[true]}') == {"a": 1, "b": [True]}
    for bad in ('{"b":1,"a":2}', '{"a": 1}', '{"a":1.0}', "not json", b"\xff"):
        with pytest.raises(NotCanonical):
            parse(bad)
    with pytest.raises(NotCanonical):
        canonical({"x": float("nan")})
    with pytest.raises(NotCanonical):
        canonical({"x": "\ud800"})  # a lone surrogate is not Unicode text


def test_the_record_body_carries_its_seq_and_no_naive_time() -> None:
    event = AuditEvent("eu", "acc-1", SYSTEM, Action.KEY_ROTATED, "key:eu", T0, {"v": 2})
    body = event.body(7)
    assert body["seq"] == 7 and body["action"] == "key.rotated"
    assert parse_time(body["at"]) == T0
    with pytest.raises(ValueError, match="naive"):
        AuditEvent("eu", None, SYSTEM, Action.PURGE, "x", datetime(2026, 1, 1)).body(1)


def test_pseudonyms_are_keyed_and_stable() -> None:
    k1, k2 = b"k" * 32, b"j" * 32
    assert pseudonym(k1, "ann@example.com") == pseudonym(k1, "ann@example.com")
    assert pseudonym(k1, "ann@example.com") != pseudonym(k2, "ann@example.com")
    assert "ann" not in pseudonym(k1, "ann@example.com")
    with pytest.raises(ValueError):
        pseudonym(b"short", "x")


def test_a_checkpoint_is_due_after_1000_records_or_60_seconds() -> None:
    policy = CheckpointPolicy()
    assert not policy.due(0, T0, 999, T0 + timedelta(seconds=59))
    assert policy.due(0, T0, 1000, T0)
    assert policy.due(0, T0, 1, T0 + timedelta(seconds=60))
    assert not policy.due(5, T0, 5, T0 + timedelta(hours=1))  # nothing new to sign
    assert not policy.due(0, None, 10, T0)


def test_the_key_file_is_private_and_stable(tmp_path: Path) -> None:
    path = key_path(tmp_path, "eu")
    signer = Signer.load(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert Signer.load(path).key_id == signer.key_id
    assert str(signer.key_id) in repr(signer) and "PRIVATE" not in repr(signer)
    sig = signer.sign(b"m")
    verifier = Verifier.from_b64(signer.verifier.public_b64())
    assert verifier.verify(b"m", sig) and not verifier.verify(b"n", sig)
    assert not verifier.verify(b"m", "not base64!")
    os.chmod(path, 0o644)
    with pytest.raises(AuditKeyError, match="readable"):
        Signer.load(path)
    with pytest.raises(AuditKeyError, match="cannot read"):
        Signer.load(tmp_path / "none")
    bad = tmp_path / "bad"
    bad.write_text("x")
    bad.chmod(0o600)
    with pytest.raises(AuditKeyError, match="PEM"):
        Signer.load(bad)
    with pytest.raises(AuditKeyError):
        Verifier.from_b64("AAAA")


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@given(_json)
def test_the_fast_path_agrees_with_rfc8785(value: object) -> None:
    """canonical() takes the C encoder for simple values: it must give rfc8785's bytes, or
    refuse what rfc8785 refuses."""
    try:
        expected = rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, ValueError, TypeError):
        with pytest.raises(NotCanonical):
            canonical(value)
    else:
        assert canonical(value) == expected
