"""The only module of sealflow that touches raw crypto (DESIGN house rule 4): Google Tink AEAD
keysets (AES256_GCM, Tink output prefix), their rotation, and their serialisation, either
encrypted under a key-encryption AEAD (the account keysets in the key store) or in clear JSON
(the local key file's own KEK keyset, protected by its file mode).

Every ciphertext starts with Tink's 5-byte prefix (0x01 and the 4-byte id of the key that
made it), so `key_id_of()` tells which key of a keyset encrypted it without decrypting.
Every decryption failure raises `DecryptionFailed`, whatever the cause; its message never
holds data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Protocol

import tink
from google.protobuf.message import DecodeError
from tink import aead, proto_keyset_format, secret_key_access
from tink.proto import tink_pb2

from sealflow.vault.errors import DecryptionFailed, KeyProviderError, KeyVersionError

_PREFIX_LEN = 5  # Tink output prefix: version byte 0x01 + big-endian 4-byte key id
_TINK_START_BYTE = 0x01


class WrappingAead(Protocol):
    """What wraps a keyset: a key-encryption key seen as an AEAD (a KeyProvider is one)."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes: ...


@functools.cache
def _registered() -> None:
    """Registers Tink's AEAD key managers on first use, never at import time."""
    aead.register()


class _TinkAdapter(aead.Aead):  # type: ignore[misc]  # tink ships no type information
    """Presents a WrappingAead to Tink's encrypted-keyset functions. Errors of the wrapping
    AEAD (a provider being down, a retired version) pass through unchanged."""

    def __init__(self, inner: WrappingAead) -> None:
        self._inner = inner

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        return self._inner.encrypt(plaintext, associated_data)

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        return self._inner.decrypt(ciphertext, associated_data)


def prefix_of(key_id: int) -> bytes:
    """The 5-byte Tink prefix every ciphertext of key `key_id` starts with."""
    return bytes([_TINK_START_BYTE]) + key_id.to_bytes(_PREFIX_LEN - 1, "big")


def key_id_of(ciphertext: bytes) -> int | None:
    """The id of the key that made a Tink ciphertext, or None if it has no Tink prefix."""
    if len(ciphertext) < _PREFIX_LEN or ciphertext[0] != _TINK_START_BYTE:
        return None
    return int.from_bytes(ciphertext[1:_PREFIX_LEN], "big")


class Keyset:
    """An immutable AEAD keyset. Changes (a new primary, a disabled key) return a new one."""

    __slots__ = ("_handle", "_keys", "_primary", "_primitive")

    def __init__(self, handle: tink.KeysetHandle) -> None:
        _registered()
        info = handle.keyset_info()
        self._handle = handle
        self._primary: int = int(info.primary_key_id)
        self._keys: tuple[tuple[int, bool], ...] = tuple(
            (int(k.key_id), k.status == tink_pb2.ENABLED) for k in info.key_info
        )
        self._primitive = handle.primitive(aead.Aead)

    # -- making and changing ---------------------------------------------------------------
    @classmethod
    def generate(cls) -> Keyset:
        _registered()
        return cls(tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM))

    def with_new_primary(self) -> Keyset:
        """Rotation: a fresh AES256_GCM key becomes primary; the others still decrypt."""
        keyset = self._proto()
        fresh = _proto_of(tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)).key[0]
        used = {k.key_id for k in keyset.key}
        while fresh.key_id in used:  # pragma: no cover - a 1 in 2**31 collision
            fresh = _proto_of(tink.new_keyset_handle(aead.aead_key_templates.AES256_GCM)).key[0]
        keyset.key.append(fresh)
        keyset.primary_key_id = fresh.key_id
        return Keyset(_handle_of(keyset))

    def with_key_disabled(self, key_id: int) -> Keyset:
        """Retirement: the key stays in the keyset (its id keeps its place) but no longer
        decrypts. The primary cannot be disabled."""
        if key_id == self._primary:
            raise KeyVersionError("the primary key cannot be retired; rotate first")
        keyset = self._proto()
        for key in keyset.key:
            if key.key_id == key_id:
                key.status = tink_pb2.DISABLED
                return Keyset(_handle_of(keyset))
        raise KeyVersionError(f"key {key_id} is not in this keyset")

    def without_keys(self, key_ids: Iterable[int]) -> Keyset:
        """Removal: the keys are deleted from the keyset, their material gone for good, so
        their ciphertexts never decrypt again. The primary cannot be removed."""
        drop = set(key_ids)
        if self._primary in drop:
            raise KeyVersionError("the primary key cannot be removed; rotate first")
        unknown = drop - set(self.key_ids)
        if unknown:
            raise KeyVersionError(f"keys {sorted(unknown)} are not in this keyset")
        keyset = self._proto()
        kept = [key for key in keyset.key if key.key_id not in drop]
        del keyset.key[:]
        keyset.key.extend(kept)
        return Keyset(_handle_of(keyset))

    # -- looking ---------------------------------------------------------------------------
    @property
    def primary_key_id(self) -> int:
        return self._primary

    @property
    def key_ids(self) -> tuple[int, ...]:
        """Every key id, oldest first (rotation appends)."""
        return tuple(k for k, _ in self._keys)

    def is_enabled(self, key_id: int) -> bool:
        return any(k == key_id and enabled for k, enabled in self._keys)

    def __repr__(self) -> str:
        return f"Keyset(primary={self._primary}, keys={len(self._keys)})"

    # -- using -----------------------------------------------------------------------------
    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        return bytes(self._primitive.encrypt(plaintext, aad))

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        try:
            return bytes(self._primitive.decrypt(ciphertext, aad))
        except tink.TinkError:
            raise DecryptionFailed() from None

    # -- storing ---------------------------------------------------------------------------
    def wrap(self, kek: WrappingAead, aad: bytes) -> bytes:
        """The keyset encrypted under `kek`, bound to `aad` (Tink's encrypted keyset)."""
        return bytes(proto_keyset_format.serialize_encrypted(self._handle, _TinkAdapter(kek), aad))

    @classmethod
    def unwrap(cls, blob: bytes, kek: WrappingAead, aad: bytes) -> Keyset:
        _registered()
        try:
            handle = proto_keyset_format.parse_encrypted(blob, _TinkAdapter(kek), aad)
            return cls(handle)
        except (tink.TinkError, DecodeError):
            raise DecryptionFailed("the wrapped keyset could not be decrypted") from None

    def to_json(self) -> str:
        """The keyset in clear (Tink JSON). Only the local key file stores this."""
        return str(tink.json_proto_keyset_format.serialize(self._handle, secret_key_access.TOKEN))

    @classmethod
    def from_json(cls, text: str) -> Keyset:
        _registered()
        try:
            handle = tink.json_proto_keyset_format.parse(text, secret_key_access.TOKEN)
            return cls(handle)
        except (tink.TinkError, DecodeError, ValueError):
            raise KeyProviderError("the key file does not hold a valid Tink keyset") from None

    def _proto(self) -> tink_pb2.Keyset:
        return _proto_of(self._handle)


def _proto_of(handle: tink.KeysetHandle) -> tink_pb2.Keyset:
    keyset = tink_pb2.Keyset()
    keyset.ParseFromString(proto_keyset_format.serialize(handle, secret_key_access.TOKEN))
    return keyset


def _handle_of(keyset: tink_pb2.Keyset) -> tink.KeysetHandle:
    return proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
