"""sealflow.vault._aead: Tink keysets, rotation, retirement, wrapping and the one error type."""

from __future__ import annotations

import pytest

from sealflow.vault._aead import Keyset, key_id_of, prefix_of
from sealflow.vault.errors import DecryptionFailed, KeyProviderError, KeyVersionError


def test_round_trip_and_the_prefix_names_the_key() -> None:
    ks = Keyset.generate()
    ct = ks.encrypt(b"hello", b"aad")
    assert key_id_of(ct) == ks.primary_key_id
    assert ks.decrypt(ct, b"aad") == b"hello"
    assert b"hello" not in ct


def test_no_prefix_means_no_key_id() -> None:
    assert key_id_of(b"") is None
    assert key_id_of(b"\x01abc") is None
    assert key_id_of(b"\x00" + b"\x00" * 20) is None


def test_wrong_aad_and_flipped_bytes_fail_with_one_error() -> None:
    ks = Keyset.generate()
    ct = ks.encrypt(b"hello", b"aad")
    with pytest.raises(DecryptionFailed):
        ks.decrypt(ct, b"other")
    for i in range(len(ct)):
        flipped = bytearray(ct)
        flipped[i] ^= 0x01
        with pytest.raises(DecryptionFailed):
            ks.decrypt(bytes(flipped), b"aad")
    with pytest.raises(DecryptionFailed):
        ks.decrypt(ct[:-1], b"aad")


def test_rotation_keeps_old_keys_and_disabling_stops_them() -> None:
    ks = Keyset.generate()
    old = ks.encrypt(b"v1", b"")
    rotated = ks.with_new_primary()
    assert rotated.key_ids[0] == ks.primary_key_id
    assert rotated.primary_key_id == rotated.key_ids[1]
    assert rotated.decrypt(old, b"") == b"v1"
    assert key_id_of(rotated.encrypt(b"v2", b"")) == rotated.primary_key_id
    disabled = rotated.with_key_disabled(ks.primary_key_id)
    assert not disabled.is_enabled(ks.primary_key_id)
    assert disabled.is_enabled(disabled.primary_key_id)
    assert disabled.key_ids == rotated.key_ids
    with pytest.raises(DecryptionFailed):
        disabled.decrypt(old, b"")


def test_the_primary_and_unknown_keys_cannot_be_disabled() -> None:
    ks = Keyset.generate()
    with pytest.raises(KeyVersionError, match="primary"):
        ks.with_key_disabled(ks.primary_key_id)
    with pytest.raises(KeyVersionError, match="not in this keyset"):
        ks.with_new_primary().with_key_disabled(12345)


def test_wrapping_binds_the_aad_and_the_kek() -> None:
    kek, other = Keyset.generate(), Keyset.generate()
    ks = Keyset.generate().with_new_primary()
    blob = ks.wrap(kek, b"place")
    back = Keyset.unwrap(blob, kek, b"place")
    assert back.key_ids == ks.key_ids
    ct = ks.encrypt(b"x", b"")
    assert back.decrypt(ct, b"") == b"x"
    for bad_kek, aad in ((kek, b"elsewhere"), (other, b"place")):
        with pytest.raises(DecryptionFailed):
            Keyset.unwrap(blob, bad_kek, aad)
    with pytest.raises(DecryptionFailed):
        Keyset.unwrap(b"not a keyset", kek, b"place")


def test_json_round_trip_and_garbage() -> None:
    ks = Keyset.generate().with_new_primary()
    assert Keyset.from_json(ks.to_json()).key_ids == ks.key_ids
    with pytest.raises(KeyProviderError):
        Keyset.from_json("{not json")
    with pytest.raises(KeyProviderError):
        Keyset.from_json('{"primaryKeyId": 1, "key": []}')


def test_repr_shows_no_key_material() -> None:
    ks = Keyset.generate()
    assert repr(ks) == f"Keyset(primary={ks.primary_key_id}, keys=1)"


def test_removing_keys_deletes_them_but_never_the_primary() -> None:
    ks = Keyset.generate()
    old = ks.encrypt(b"v1", b"")
    rotated = ks.with_new_primary().with_new_primary()
    first, middle, primary = rotated.key_ids
    assert prefix_of(first) == old[:5]
    smaller = rotated.without_keys([first])
    assert smaller.key_ids == (middle, primary) and smaller.primary_key_id == primary
    with pytest.raises(DecryptionFailed):
        smaller.decrypt(old, b"")
    assert smaller.without_keys([]).key_ids == smaller.key_ids
    with pytest.raises(KeyVersionError, match="primary"):
        rotated.without_keys([first, primary])
    with pytest.raises(KeyVersionError, match="not in this keyset"):
        rotated.without_keys([12345])
