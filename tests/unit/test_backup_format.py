"""The encrypted backup format on in-memory streams (backup_format): a round trip at every
size edge, and every alteration STREAM is meant to catch: a flipped bit anywhere, chunks
reordered or dropped (the last one included, at a chunk boundary), bytes appended, header
fields changed, a wrong key or region."""

from __future__ import annotations

import hashlib
import io
import json
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealflow import backup_format as fmt

KEY = bytes(range(32))
CHUNK = fmt.MIN_CHUNK_BYTES


def _seal(plain: bytes, *, key: bytes = KEY, region: str = "us") -> bytes:
    out = io.BytesIO()
    fmt.write_backup(io.BytesIO(plain), out, backup_key=key, region=region,
                     created_at="2026-11-29T12:00:00+00:00", source_kind="sqlite",
                     plaintext_bytes=len(plain), sha256=hashlib.sha256(plain).hexdigest(),
                     chunk_bytes=CHUNK, schema="0012")
    return out.getvalue()


def _open(raw: bytes, *, key: bytes = KEY, region: str = "us") -> bytes:
    stream = io.BytesIO(raw)
    header, aad = fmt.read_header(stream)
    data_key = fmt.unwrap_key(header, key, region=region)
    return b"".join(fmt.read_chunks(stream, header, aad, data_key))


def _body_start(raw: bytes) -> int:
    header = fmt.read_header(io.BytesIO(raw))[0]
    return len(raw) - header.body_bytes()


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 3 * CHUNK + 7])
def test_round_trip_at_every_edge(size: int) -> None:
    plain = os.urandom(size)
    raw = _seal(plain)
    header = fmt.read_header(io.BytesIO(raw))[0]
    assert header.chunks == max(1, -(-size // CHUNK))
    assert len(raw) - _body_start(raw) == size + header.chunks * fmt.TAG_BYTES
    assert _open(raw) == plain


def test_every_backup_has_its_own_data_key_and_nonces() -> None:
    plain = b"same plaintext" * 1000
    one, two = _seal(plain), _seal(plain)
    h1, h2 = (fmt.read_header(io.BytesIO(r))[0] for r in (one, two))
    assert h1.wrapped_key != h2.wrapped_key and h1.nonce_prefix != h2.nonce_prefix
    assert one[_body_start(one):] != two[_body_start(two):]
    assert b"same plaintext" not in one


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_flipped_bit_is_refused(data: st.DataObject) -> None:
    raw = _seal(b"x" * (2 * CHUNK + 100))
    at = data.draw(st.integers(0, len(raw) - 1))
    bit = data.draw(st.integers(0, 7))
    bad = raw[:at] + bytes([raw[at] ^ (1 << bit)]) + raw[at + 1:]
    with pytest.raises(fmt.BackupError):
        _open(bad)


def _chunks(raw: bytes) -> tuple[bytes, list[bytes]]:
    start = _body_start(raw)
    body = raw[start:]
    size = CHUNK + fmt.TAG_BYTES
    return raw[:start], [body[i:i + size] for i in range(0, len(body), size)]


def test_reordered_dropped_and_spliced_chunks_are_refused() -> None:
    plain = os.urandom(4 * CHUNK)  # a multiple of the chunk size: every chunk full
    raw = _seal(plain)
    head, chunks = _chunks(raw)
    assert len(chunks) == 4
    with pytest.raises(fmt.BackupCorrupt, match="chunk 2 of 4"):
        _open(head + b"".join([chunks[0], chunks[2], chunks[1], chunks[3]]))
    # The last chunk dropped: what remains is whole chunks, so only the last-chunk flag in
    # the nonce can tell; the length check says it first.
    with pytest.raises(fmt.BackupTruncated, match="chunk 4 of 4"):
        _open(head + b"".join(chunks[:3]))
    # A file cut at a chunk boundary presented as complete (its header edited to 3 chunks)
    # fails the header's authentication in every chunk.
    cut = head.replace(b'"chunks":4', b'"chunks":3').replace(
        f'"plaintext_bytes":{4 * CHUNK}'.encode(), f'"plaintext_bytes":{3 * CHUNK}'.encode())
    cut = fmt.MAGIC + len(cut[len(fmt.MAGIC) + 4:]).to_bytes(4, "big") + cut[len(fmt.MAGIC) + 4:]
    with pytest.raises(fmt.BackupCorrupt, match="chunk 1 of 3"):
        _open(cut + b"".join(chunks[:3]))
    # A chunk of another backup under the same backup key.
    other_head, other_chunks = _chunks(_seal(plain))
    with pytest.raises(fmt.BackupCorrupt, match="chunk 2 of 4"):
        _open(head + chunks[0] + other_chunks[1] + chunks[2] + chunks[3])
    with pytest.raises(fmt.BackupCorrupt, match="follow the last chunk"):
        _open(raw + chunks[3])


@pytest.mark.parametrize(("field", "value"), [
    ("created_at", "2026-11-30T12:00:00+00:00"), ("source", "postgresql"),
    ("sha256", "0" * 64), ("schema", "0001"),
])
def test_an_edited_header_is_refused(field: str, value: str) -> None:
    raw = _seal(b"y" * 5000)
    stream = io.BytesIO(raw)
    header = fmt.read_header(stream)[0]
    fields = json.loads(header.encode())
    fields[field] = value
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    edited = fmt.MAGIC + len(encoded).to_bytes(4, "big") + encoded + raw[_body_start(raw):]
    with pytest.raises(fmt.BackupCorrupt, match="chunk 1 of 2"):
        _open(edited)


def test_wrong_key_and_region_are_named() -> None:
    raw = _seal(b"z" * 100)
    with pytest.raises(fmt.WrongBackupKey, match="another backup key"):
        _open(raw, key=bytes(32))
    with pytest.raises(fmt.WrongRegion, match="region 'us', not 'eu'"):
        _open(raw, region="eu")
    # A header re-labelled to another region does not unwrap under that region's binding.
    relabelled = raw.replace(b'"region":"us"', b'"region":"eu"', 1)
    with pytest.raises(fmt.BackupCorrupt, match="wrapped data key"):
        _open(relabelled, region="eu")


@pytest.mark.parametrize("raw", [b"", b"SEALFLOW-BACKUP\n", b"SQLite format 3\x00" + bytes(100),
                                 fmt.MAGIC + (10**6).to_bytes(4, "big"),
                                 fmt.MAGIC + (5).to_bytes(4, "big") + b"{nope"])
def test_what_is_not_a_backup_is_refused(raw: bytes) -> None:
    with pytest.raises(fmt.BackupError):
        _open(raw)


def test_a_source_that_changes_while_sealed_is_refused() -> None:
    plain = b"a" * 5000
    with pytest.raises(OSError, match="changed"):
        fmt.write_backup(io.BytesIO(b"b" * 5000), io.BytesIO(), backup_key=KEY, region="us",
                         created_at="t", source_kind="sqlite", plaintext_bytes=len(plain),
                         sha256=hashlib.sha256(plain).hexdigest(), chunk_bytes=CHUNK)
    with pytest.raises(OSError, match="ended"):
        fmt.write_backup(io.BytesIO(b"b" * 10), io.BytesIO(), backup_key=KEY, region="us",
                         created_at="t", source_kind="sqlite", plaintext_bytes=len(plain),
                         sha256=hashlib.sha256(plain).hexdigest(), chunk_bytes=CHUNK)
