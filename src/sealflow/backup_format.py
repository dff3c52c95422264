"""The encrypted backup file format (D6), on streams only: no paths, no database, no clock.

A backup file is

    MAGIC (16 bytes) | header length (4 bytes, big-endian) | header (canonical JSON) | chunks

The header says what the file holds (format version, region, created time, source kind,
plaintext size, chunk size and count, SHA-256 of the plaintext) and carries the backup's own
data key, wrapped (AES-256-GCM) by the region's backup key under associated data that binds
the format version and the region. The body is the plaintext cut into `chunk_bytes` chunks,
each sealed with AES-256-GCM under the data key in the STREAM construction (Hoang, Reyhani-
tabar, Rogaway, Vizar 2015, as Tink's streaming AEAD): the nonce is a random 7-byte prefix,
the chunk's 4-byte index and a last-chunk flag, and every chunk's associated data is the
SHA-256 of the whole header. So a flipped byte, a dropped, reordered or swapped chunk, a
truncation before the last chunk, bytes appended after it, or an edited header all fail
authentication, and `BackupCorrupt` says which chunk.

A fresh random data key per backup means a leaked data key opens one file and nonces never
repeat across files; the backup key never encrypts data itself, so it can be kept (and
rotated) apart from everything else. The plaintext hash in the header is checked after the
last chunk as a second, key-independent check of the restored bytes.

The AES-GCM calls live here, in the one module that touches backup crypto; the vault
(`vault/_aead.py`) keeps account keysets and is not involved: a backup is readable with the
backup key alone, whatever happens to the account keys (shredded data stays shredded: the
sealed column values inside the database are still sealed by account keys).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sealflow.core.errors import SealflowError

MAGIC = b"SEALFLOW-BACKUP\n"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM-STREAM"
KEY_BYTES = 32
TAG_BYTES = 16
PREFIX_BYTES = 7
MAX_HEADER_BYTES = 64 * 1024
MIN_CHUNK_BYTES = 4096
MAX_CHUNK_BYTES = 64 * 1024 * 1024
_LEN = struct.Struct(">I")

_INTS = ("format", "plaintext_bytes", "chunk_bytes", "chunks")
_STRS = ("cipher", "region", "created_at", "source", "sha256", "key_id", "wrap_nonce",
         "wrapped_key", "nonce_prefix")

Progress = Callable[[int], None]  # called with the plaintext bytes done so far


class BackupError(SealflowError):
    """A backup file that cannot be used. Retrying with the same file does not help."""

    code = "backup_invalid"


class BackupCorrupt(BackupError):
    code = "backup_corrupt"


class BackupTruncated(BackupError):
    code = "backup_truncated"


class WrongBackupKey(BackupError):
    code = "backup_wrong_key"


class WrongRegion(BackupError):
    code = "backup_wrong_region"


@dataclass(frozen=True)
class Header:
    format: int
    cipher: str
    region: str
    created_at: str  # ISO 8601, UTC
    source: str  # "sqlite" or "postgresql"
    plaintext_bytes: int
    chunk_bytes: int
    chunks: int
    sha256: str  # of the plaintext
    key_id: str  # which backup key wrapped the data key (key_id())
    wrap_nonce: str  # base64
    wrapped_key: str  # base64: the data key under the backup key
    nonce_prefix: str  # base64, PREFIX_BYTES
    schema: str | None = None  # the database's migration revision, when known

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")).encode()

    def body_bytes(self) -> int:
        """The exact length of the chunks that must follow the header."""
        return self.plaintext_bytes + self.chunks * TAG_BYTES


def key_id(backup_key: bytes) -> str:
    """A short public name for a backup key (a hash of it), so a file made with another key
    is named as such instead of failing as "corrupt"."""
    return hashlib.sha256(b"sealflow backup key id\x00" + backup_key).hexdigest()[:16]


def chunk_count(plaintext_bytes: int, chunk_bytes: int) -> int:
    """At least one chunk (an empty plaintext still ends in a sealed last chunk)."""
    return max(1, -(-plaintext_bytes // chunk_bytes))


def _wrap_aad(region: str) -> bytes:
    return f"sealflow backup data key\x00v{FORMAT_VERSION}\x00{region}".encode()


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _check_key(backup_key: bytes) -> None:
    if len(backup_key) != KEY_BYTES:
        raise ValueError(f"a backup key has {KEY_BYTES} bytes, not {len(backup_key)}")


def write_backup(
    source: BinaryIO,
    out: BinaryIO,
    *,
    backup_key: bytes,
    region: str,
    created_at: str,
    source_kind: str,
    plaintext_bytes: int,
    sha256: str,
    chunk_bytes: int,
    schema: str | None = None,
    progress: Progress | None = None,
) -> Header:
    """Seals `plaintext_bytes` bytes read from `source` into `out`. The caller knows the
    plaintext's size and hash beforehand (it made the copy), so the header comes first and
    the body is written in one pass, one chunk in memory at a time."""
    _check_key(backup_key)
    if not MIN_CHUNK_BYTES <= chunk_bytes <= MAX_CHUNK_BYTES:
        raise ValueError(f"chunk_bytes must be {MIN_CHUNK_BYTES} to {MAX_CHUNK_BYTES}")
    data_key = AESGCM.generate_key(bit_length=256)
    wrap_nonce = os.urandom(12)
    prefix = os.urandom(PREFIX_BYTES)
    header = Header(
        format=FORMAT_VERSION, cipher=CIPHER, region=region, created_at=created_at,
        source=source_kind, plaintext_bytes=plaintext_bytes, chunk_bytes=chunk_bytes,
        chunks=chunk_count(plaintext_bytes, chunk_bytes), sha256=sha256,
        key_id=key_id(backup_key), wrap_nonce=_b64(wrap_nonce),
        wrapped_key=_b64(AESGCM(backup_key).encrypt(wrap_nonce, data_key, _wrap_aad(region))),
        nonce_prefix=_b64(prefix), schema=schema,
    )
    encoded = header.encode()
    out.write(MAGIC + _LEN.pack(len(encoded)) + encoded)
    aad = hashlib.sha256(MAGIC + encoded).digest()
    aead = AESGCM(data_key)
    digest = hashlib.sha256()
    done = 0
    for index in range(header.chunks):
        want = min(chunk_bytes, plaintext_bytes - done)
        plain = _read_exact(source, want)
        if len(plain) != want:
            raise OSError(f"the copy ended at byte {done + len(plain)} of {plaintext_bytes}")
        digest.update(plain)
        last = index == header.chunks - 1
        out.write(aead.encrypt(_nonce(prefix, index, last), plain, aad))
        done += want
        if progress is not None:
            progress(done)
    if digest.hexdigest() != sha256:
        raise OSError("the copy changed while it was being encrypted; take the backup again")
    return header


def read_header(stream: BinaryIO) -> tuple[Header, bytes]:
    """The header and the chunks' associated data. BackupCorrupt when it is not a sealflow
    backup or the header does not parse."""
    start = _read_exact(stream, len(MAGIC) + _LEN.size)
    if len(start) < len(MAGIC) + _LEN.size or not start.startswith(MAGIC):
        raise BackupCorrupt("not a sealflow backup file (its first bytes are not the format's)")
    (length,) = _LEN.unpack(start[len(MAGIC):])
    if length > MAX_HEADER_BYTES:
        raise BackupCorrupt(f"header length {length} is beyond {MAX_HEADER_BYTES} bytes")
    encoded = _read_exact(stream, length)
    if len(encoded) != length:
        raise BackupTruncated("the file ends inside its header (truncated)")
    try:
        header = Header(**json.loads(encoded))
        typed = all(isinstance(getattr(header, f), int) for f in _INTS) and all(
            isinstance(getattr(header, f), str) for f in _STRS)
        if not typed or len(_unb64(header.nonce_prefix)) != PREFIX_BYTES:
            raise ValueError
    except (ValueError, TypeError):
        raise BackupCorrupt("the header does not parse (altered)") from None
    if header.format != FORMAT_VERSION or header.cipher != CIPHER:
        raise BackupCorrupt(f"format {header.format} ({header.cipher}) is not one this "
                            f"sealflow reads (format {FORMAT_VERSION})")
    if not (MIN_CHUNK_BYTES <= header.chunk_bytes <= MAX_CHUNK_BYTES and header.plaintext_bytes
            >= 0 and header.chunks == chunk_count(header.plaintext_bytes, header.chunk_bytes)):
        raise BackupCorrupt("the header's sizes do not add up (altered)")
    return header, hashlib.sha256(MAGIC + encoded).digest()


def unwrap_key(header: Header, backup_key: bytes, *, region: str) -> bytes:
    """The data key. WrongRegion / WrongBackupKey name those cases; any other failure is an
    altered header."""
    _check_key(backup_key)
    if header.region != region:
        raise WrongRegion(f"the backup is of region {header.region!r}, not {region!r}")
    if header.key_id != key_id(backup_key):
        raise WrongBackupKey(f"the backup was made with another backup key (key id "
                             f"{header.key_id}; region {region}'s is {key_id(backup_key)})")
    try:
        return AESGCM(backup_key).decrypt(_unb64(header.wrap_nonce), _unb64(header.wrapped_key),
                                          _wrap_aad(region))
    except (InvalidTag, ValueError):
        raise BackupCorrupt("the wrapped data key does not open (header altered)") from None


def read_chunks(
    stream: BinaryIO, header: Header, aad: bytes, data_key: bytes,
    progress: Progress | None = None,
) -> Iterator[bytes]:
    """Yields the plaintext chunk by chunk, each authenticated before it is yielded; after
    the last one, checks that nothing follows and that the plaintext's SHA-256 matches. A
    consumer must not use what it got until the iterator is exhausted without error."""
    aead = AESGCM(data_key)
    prefix = _unb64(header.nonce_prefix)
    digest = hashlib.sha256()
    done = 0
    for index in range(header.chunks):
        last = index == header.chunks - 1
        want = min(header.chunk_bytes, header.plaintext_bytes - done) + TAG_BYTES
        sealed = _read_exact(stream, want)
        if len(sealed) != want:
            raise BackupTruncated(f"the file ends in chunk {index + 1} of {header.chunks} "
                                  "(truncated)")
        try:
            plain = aead.decrypt(_nonce(prefix, index, last), sealed, aad)
        except InvalidTag:
            raise BackupCorrupt(f"chunk {index + 1} of {header.chunks} fails authentication "
                                "(altered, reordered or swapped)") from None
        digest.update(plain)
        done += len(plain)
        if progress is not None:
            progress(done)
        yield plain
    if stream.read(1):
        raise BackupCorrupt("bytes follow the last chunk (appended or spliced)")
    if digest.hexdigest() != header.sha256:
        raise BackupCorrupt("the plaintext's SHA-256 does not match the header")


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts: list[bytes] = []
    while n > 0:
        part = stream.read(n)
        if not part:
            break
        parts.append(part)
        n -= len(part)
    return b"".join(parts)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)
