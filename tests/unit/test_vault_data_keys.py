"""The Vault's data-key life cycle beyond rotation (real key file, SQLite key store, Tink):
re-encrypting a value under the primary, removing older keys for good, and when every process
is known to seal under a new primary."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from sealflow.vault.errors import AccountShredded, DecryptionFailed, KeyVersionError
from sealflow.vault.vault import FORMAT_V1, Vault
from tests.unit.test_vault_facade import Parts


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path)
    yield p
    p.engine.dispose()


def test_reencrypt_moves_a_value_to_the_primary_in_place(parts: Parts) -> None:
    vault = parts.vault()
    old = vault.encrypt("a1", "t", "r1", "c", b"payload")
    new_key = vault.rotate_data_key("a1")
    again = vault.reencrypt("a1", "t", "r1", "c", old)
    assert Vault.data_key_id(again) == new_key != Vault.data_key_id(old)
    assert again.startswith(Vault.ciphertext_prefix(new_key))
    assert Vault.ciphertext_prefix(new_key)[0] == FORMAT_V1
    assert vault.decrypt("a1", "t", "r1", "c", again) == b"payload"
    with pytest.raises(DecryptionFailed):  # still bound to its place
        vault.decrypt("a1", "t", "r2", "c", again)
    with pytest.raises(DecryptionFailed):  # a value that is not its own does not move
        vault.reencrypt("a1", "t", "r2", "c", old)


def test_removed_keys_no_longer_decrypt_anywhere(parts: Parts) -> None:
    vault, other = parts.vault(), parts.vault()
    old = vault.encrypt("a1", "t", "r", "c", b"old")
    assert other.decrypt("a1", "t", "r", "c", old) == b"old"  # other process: cached keyset
    first = Vault.data_key_id(old)
    assert first is not None
    primary = vault.rotate_data_key("a1")
    new = vault.encrypt("a1", "t", "r", "c", b"new")
    with pytest.raises(KeyVersionError, match="primary"):
        vault.remove_data_keys("a1", [first, primary])
    assert vault.remove_data_keys("a1", [first, 424242]) == (first,)
    assert vault.data_key_ids("a1") == (primary,)
    assert vault.remove_data_keys("a1", [first]) == ()  # already gone: a retry is harmless
    with pytest.raises(DecryptionFailed):
        vault.decrypt("a1", "t", "r", "c", old)
    with pytest.raises(DecryptionFailed):
        parts.vault().decrypt("a1", "t", "r", "c", old)
    parts.clock.mono += 60  # the other process's cache expires: the key is gone there too
    with pytest.raises(DecryptionFailed):
        other.decrypt("a1", "t", "r", "c", old)
    assert other.decrypt("a1", "t", "r", "c", new) == b"new"


def test_removal_racing_a_rotation_keeps_the_new_key(parts: Parts) -> None:
    vault = parts.vault()
    first = Vault.data_key_id(vault.encrypt("a1", "t", "r", "c", b"x"))
    second = vault.rotate_data_key("a1")
    store = parts.store
    real_replace = store.replace
    calls = {"n": 0}

    def racing_replace(account_id: str, **kw: object) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:  # another process rotates between our read and our write
            parts.vault().rotate_data_key(account_id)
        return real_replace(account_id, **kw)  # type: ignore[arg-type]

    store.replace = racing_replace  # type: ignore[method-assign]
    try:
        assert vault.remove_data_keys("a1", [first]) == (first,)
    finally:
        store.replace = real_replace  # type: ignore[method-assign]
    ids = vault.data_key_ids("a1")
    assert len(ids) == 2 and ids[0] == second and first not in ids
    assert vault.primary_data_key_id("a1") == ids[-1]


def test_removal_needs_a_keyset_and_refuses_a_shredded_account(parts: Parts) -> None:
    vault = parts.vault()
    with pytest.raises(DecryptionFailed):
        vault.remove_data_keys("nobody", [1])
    vault.encrypt("a1", "t", "r", "c", b"x")
    vault.shred("a1")
    with pytest.raises(AccountShredded):
        vault.remove_data_keys("a1", [1])
    with pytest.raises(AccountShredded):
        vault.primary_settled_at("a1")


def test_settled_after_the_last_rotation_plus_the_cache_ttl(parts: Parts) -> None:
    vault = parts.vault(cache_ttl_s=12.0)
    assert vault.cache_ttl_s == 12.0
    now = parts.clock.now()
    assert vault.primary_settled_at("new") == now  # no keys: nothing to wait for
    vault.encrypt("a1", "t", "r", "c", b"x")
    assert vault.primary_settled_at("a1") == now + timedelta(seconds=12)  # created
    first = vault.data_key_ids("a1")[0]
    later = now + timedelta(hours=1)
    parts.clock.now = lambda: later  # type: ignore[method-assign]
    vault.rotate_data_key("a1")
    assert vault.primary_settled_at("a1") == later + timedelta(seconds=12)  # rotated
    parts.clock.now = lambda: later + timedelta(hours=1)  # type: ignore[method-assign]
    vault.remove_data_keys("a1", [first])  # the primary stays: nothing new to wait for
    assert vault.primary_settled_at("a1") == later + timedelta(seconds=12)


def test_the_current_kek_version_cannot_be_retired(parts: Parts) -> None:
    vault = parts.vault()
    vault.encrypt("a1", "t", "r", "c", b"x")
    for version in (1, 2):
        with pytest.raises(KeyVersionError, match="the current version is 1; rotate first"):
            vault.retire_kek(version)
    assert parts.provider.describe()["retired"] == []
