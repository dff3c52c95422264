"""The Vault facade with real parts: a local key file, a SQLite key store, Tink. Covers
binding to the place, tampering, data-key and KEK rotation, retirement, shredding (also
against a restored keyset row), the cache, and a canary that never leaks."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, insert

from sealflow.db.engine import make_engine
from sealflow.vault.errors import AccountShredded, DecryptionFailed, KeyVersionError
from sealflow.vault.keystore import (
    KeyStore,
    account_keysets,
    default_keystore_url,
    upgrade_keystore,
)
from sealflow.vault.providers.local_file import LocalFileProvider
from sealflow.vault.vault import FORMAT_V1, Vault, encode_aad

CANARY = b"canary-7f3a9c1e-do-not-leak"


class Clock:
    def __init__(self) -> None:
        self.mono = 0.0

    def now(self) -> datetime:
        return datetime(2026, 12, 1, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - never slept here
        self.mono += seconds


class Parts:
    def __init__(self, root: Path, region: str = "us") -> None:
        self.root = root
        self.clock = Clock()
        self.engine: Engine = make_engine(default_keystore_url(root, region))
        upgrade_keystore(self.engine)
        self.store = KeyStore(self.engine, self.clock)
        self.provider = LocalFileProvider(root / "keys" / f"{region}.kek.json")
        self.region = region

    def vault(self, region: str | None = None, **kw: float) -> Vault:
        return Vault(region or self.region, self.store, self.provider, self.clock, **kw)  # type: ignore[arg-type]


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    p = Parts(tmp_path)
    yield p
    p.engine.dispose()


@pytest.fixture
def vault(parts: Parts) -> Vault:
    return parts.vault()


def test_round_trip_with_a_version_byte_in_front(vault: Vault) -> None:
    ct = vault.encrypt("a1", "authentications", "r1", "secret", CANARY)
    assert ct[0] == FORMAT_V1
    assert CANARY not in ct
    assert vault.decrypt("a1", "authentications", "r1", "secret", ct) == CANARY
    assert (
        vault.decrypt(
            "a1",
            "authentications",
            "r1",
            "secret",
            vault.encrypt("a1", "authentications", "r1", "secret", b""),
        )
        == b""
    )


@pytest.mark.parametrize(
    "place",
    [
        ("a1", "authentications", "r2", "secret"),  # another row
        ("a1", "authentications", "r1", "name"),  # another column
        ("a1", "executions", "r1", "secret"),  # another table
        ("a2", "authentications", "r1", "secret"),  # another account
    ],
)
def test_a_moved_ciphertext_does_not_decrypt(
    vault: Vault, place: tuple[str, str, str, str]
) -> None:
    ct = vault.encrypt("a1", "authentications", "r1", "secret", CANARY)
    vault.encrypt("a2", "authentications", "r1", "secret", b"a2 has keys too")
    with pytest.raises(DecryptionFailed):
        vault.decrypt(*place, ct)


def test_a_ciphertext_moved_to_another_region_does_not_decrypt(parts: Parts) -> None:
    """Even with the same key store and KEK (a misconfiguration), the region is in the aad."""
    us, eu = parts.vault("us"), parts.vault("eu")
    ct = us.encrypt("a1", "t", "r1", "c", CANARY)
    with pytest.raises(DecryptionFailed):
        eu.decrypt("a1", "t", "r1", "c", ct)


def test_the_aad_encoding_is_unambiguous() -> None:
    assert encode_aad(b"L", "ab", "c") != encode_aad(b"L", "a", "bc")
    assert encode_aad(b"L", "a|b", "c") != encode_aad(b"L", "a", "b|c")
    assert encode_aad(b"L", "", "x") != encode_aad(b"L", "x", "")
    assert encode_aad(b"L", "x") != encode_aad(b"M", "x")


def test_every_tampered_byte_fails_with_decryption_failed(vault: Vault) -> None:
    ct = vault.encrypt("a1", "t", "r1", "c", CANARY)
    for i in range(len(ct)):
        bad = bytearray(ct)
        bad[i] ^= 0x80
        with pytest.raises(DecryptionFailed) as err:
            vault.decrypt("a1", "t", "r1", "c", bytes(bad))
        assert err.value.code == "decryption_failed" and err.value.retryable is False
    for bad in (b"", ct[:1], ct[:6], ct[:-1]):
        with pytest.raises(DecryptionFailed):
            vault.decrypt("a1", "t", "r1", "c", bad)


def test_decrypting_for_an_account_without_keys_fails_and_creates_none(parts: Parts) -> None:
    vault = parts.vault()
    ct = vault.encrypt("a1", "t", "r1", "c", CANARY)
    with pytest.raises(DecryptionFailed):
        vault.decrypt("nobody", "t", "r1", "c", ct)
    assert parts.store.get("nobody") is None


def test_data_key_rotation_keeps_old_ciphertexts_readable(vault: Vault) -> None:
    old = vault.encrypt("a1", "t", "r1", "c", b"old")
    first_key = Vault.data_key_id(old)
    assert not vault.needs_reencryption("a1", old)
    new_key = vault.rotate_data_key("a1")
    assert new_key != first_key
    assert vault.data_key_ids("a1") == (first_key, new_key)
    new = vault.encrypt("a1", "t", "r1", "c", b"new")
    assert Vault.data_key_id(new) == new_key
    assert vault.needs_reencryption("a1", old) and not vault.needs_reencryption("a1", new)
    assert vault.decrypt("a1", "t", "r1", "c", old) == b"old"
    assert vault.decrypt("a1", "t", "r1", "c", new) == b"new"
    assert Vault.data_key_id(b"") is None and Vault.data_key_id(b"\x02abc") is None


def test_rotating_a_new_accounts_data_key_creates_it_first(vault: Vault) -> None:
    key = vault.rotate_data_key("fresh")
    assert len(vault.data_key_ids("fresh")) == 2 and vault.data_key_ids("fresh")[-1] == key


def test_a_rotation_by_another_process_is_picked_up_on_decrypt(parts: Parts) -> None:
    server, cli = parts.vault(), parts.vault()
    server.encrypt("a1", "t", "r1", "c", b"warm the cache")
    cli.rotate_data_key("a1")
    ct = cli.encrypt("a1", "t", "r1", "c", b"made with the new key")
    assert server.decrypt("a1", "t", "r1", "c", ct) == b"made with the new key"


def test_a_concurrent_rotation_loses_no_key(parts: Parts) -> None:
    vault = parts.vault()
    vault.encrypt("a1", "t", "r1", "c", b"x")
    store = parts.store
    real_replace = store.replace
    calls = {"n": 0}

    def racing_replace(account_id: str, **kw: object) -> bool:
        calls["n"] += 1
        if calls["n"] == 1:  # another writer rotates between our read and our write
            parts.vault().rotate_data_key(account_id)
        return real_replace(account_id, **kw)  # type: ignore[arg-type]

    store.replace = racing_replace  # type: ignore[method-assign]
    mine = vault.rotate_data_key("a1")
    store.replace = real_replace  # type: ignore[method-assign]
    ids = vault.data_key_ids("a1")
    assert len(ids) == 3 and ids[-1] == mine


def test_kek_rotation_rewrap_and_retirement(parts: Parts) -> None:
    vault = parts.vault()
    cts = {f"a{i}": vault.encrypt(f"a{i}", "t", "r", "c", f"data {i}".encode()) for i in range(7)}
    old_rows = {a: parts.store.get(a) for a in cts}
    assert vault.status().keysets_by_kek_version == {1: 7}
    with pytest.raises(KeyVersionError, match="current is 1"):
        parts.provider.retire(1)
    assert vault.rotate_kek() == 2
    with pytest.raises(KeyVersionError, match="still wrapped"):
        vault.retire_kek(1)
    progress = [vault.rewrap(batch_size=3) for _ in range(3)]
    assert [(p.rewrapped, p.remaining) for p in progress] == [(3, 4), (3, 1), (1, 0)]
    assert vault.status().keysets_by_kek_version == {2: 7}
    fresh = parts.vault()  # nothing cached: every keyset is unwrapped under KEK v2
    for account, ct in cts.items():
        assert fresh.decrypt(account, "t", "r", "c", ct) == f"data {account[1:]}".encode()
    vault.retire_kek(1)
    assert parts.provider.describe()["retired"] == [1]
    # A keyset still wrapped under v1 (an old key-store backup) no longer unwraps.
    old = old_rows["a0"]
    assert old is not None
    parts.store.shred("a0")
    with parts.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM tombstones")
        conn.execute(
            insert(account_keysets).values(
                account_id="a0", keyset=old.blob, kek_version=1, created_at=old.created_at
            )
        )
    with pytest.raises(DecryptionFailed, match=r"a0 \(KEK version 1\) could not be unwrapped"):
        parts.vault().decrypt("a0", "t", "r", "c", cts["a0"])
    fresh2 = parts.vault()
    for account in ("a1", "a6"):
        assert fresh2.decrypt(account, "t", "r", "c", cts[account])


def test_shred_makes_data_unreadable_even_if_the_keyset_row_comes_back(parts: Parts) -> None:
    vault = parts.vault()
    ct = vault.encrypt("a1", "t", "r1", "c", CANARY)
    row = parts.store.get("a1")
    assert row is not None
    assert vault.shred("a1") is True and vault.shred("a1") is False
    assert vault.is_shredded("a1") and not vault.is_shredded("a2")
    for call in (
        lambda: vault.decrypt("a1", "t", "r1", "c", ct),
        lambda: vault.decrypt("a1", "t", "r1", "c", b"\x09garbage"),
        lambda: vault.encrypt("a1", "t", "r2", "c", b"new data"),
        lambda: vault.rotate_data_key("a1"),
    ):
        with pytest.raises(AccountShredded):
            call()
    # An older key-store backup restored: the keyset row is back, the tombstone refuses it.
    with parts.engine.begin() as conn:
        conn.execute(
            insert(account_keysets).values(
                account_id="a1",
                keyset=row.blob,
                kek_version=row.kek_version,
                created_at=row.created_at,
            )
        )
    for v in (vault, parts.vault()):
        with pytest.raises(AccountShredded):
            v.decrypt("a1", "t", "r1", "c", ct)
    assert vault.status().shredded_accounts == 1


def test_a_shred_by_another_process_is_honoured_within_the_cache_ttl(parts: Parts) -> None:
    server, other = parts.vault(cache_ttl_s=30.0), parts.vault()
    ct = server.encrypt("a1", "t", "r1", "c", b"x")
    other.shred("a1")
    assert server.decrypt("a1", "t", "r1", "c", ct) == b"x"  # still cached
    parts.clock.mono += 30.0
    with pytest.raises(AccountShredded):
        server.decrypt("a1", "t", "r1", "c", ct)


def test_the_cache_is_bounded(parts: Parts) -> None:
    vault = parts.vault(cache_size=2)
    for account in ("a1", "a2", "a3", "a1"):
        vault.encrypt(account, "t", "r", "c", b"x")
    assert vault.status().cached_keysets == 2
    with pytest.raises(ValueError):
        parts.vault(cache_size=0)
    with pytest.raises(ValueError):
        parts.vault(cache_ttl_s=0)


def test_a_load_racing_a_shred_is_not_cached(parts: Parts) -> None:
    vault = parts.vault()
    vault.encrypt("a1", "t", "r", "c", b"x")
    real_get = parts.store.get

    def get_then_shred(account_id: str):  # type: ignore[no-untyped-def]
        row = real_get(account_id)
        vault.shred("a2")  # any shred meanwhile: the loaded keyset must not enter the cache
        return row

    parts.store.get = get_then_shred  # type: ignore[method-assign]
    parts.clock.mono += 60
    vault.encrypt("a1", "t", "r", "c", b"y")
    parts.store.get = real_get  # type: ignore[method-assign]
    assert vault.status().cached_keysets == 0


def test_status(parts: Parts) -> None:
    vault = parts.vault()
    vault.encrypt("a1", "t", "r", "c", b"x")
    status = vault.status()
    assert status.region == "us" and status.kek_version == 1
    assert status.provider["kind"] == "local_file"
    assert status.keysets_by_kek_version == {1: 1}
    assert (status.shredded_accounts, status.cached_keysets) == (0, 1)


def test_the_canary_is_in_no_file_and_no_error_message(parts: Parts, tmp_path: Path) -> None:
    vault = parts.vault()
    ct = vault.encrypt("a1", "authentications", "r1", "secret", CANARY)
    vault.rotate_data_key("a1")
    vault.rotate_kek()
    while not vault.rewrap(batch_size=1).done:
        pass
    messages: list[str] = []
    attempts = [
        lambda: vault.decrypt("a1", "authentications", "r2", "secret", ct),
        lambda: vault.decrypt("a1", "authentications", "r1", "secret", ct[:-3] + b"xyz"),
        lambda: vault.decrypt("a2", "authentications", "r1", "secret", ct),
        lambda: vault.decrypt("a1", "t", "r", "c", CANARY),
    ]
    vault.shred("a1")
    attempts.append(lambda: vault.decrypt("a1", "authentications", "r1", "secret", ct))
    for attempt in attempts:
        with pytest.raises(Exception) as err:
            attempt()
        messages += [str(err.value), repr(err.value), str(err.getrepr())]
    assert not any(CANARY.decode() in m for m in messages)
    parts.engine.dispose()
    with sqlite3.connect(tmp_path / "keys" / "us.keys.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "us.keys.db" for p in files)
    for path in files:
        assert CANARY not in path.read_bytes(), path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plaintext=st.binary(max_size=2048),
    account=st.text(min_size=1, max_size=20),
    table=st.text(max_size=20),
    row_id=st.one_of(st.text(max_size=20), st.integers()),
    column=st.text(max_size=20),
    other_column=st.text(max_size=20),
)
def test_round_trip_property(
    vault: Vault,
    plaintext: bytes,
    account: str,
    table: str,
    row_id: str | int,
    column: str,
    other_column: str,
) -> None:
    ct = vault.encrypt(account, table, row_id, column, plaintext)
    assert vault.decrypt(account, table, row_id, column, ct) == plaintext
    if other_column != column:
        with pytest.raises(DecryptionFailed):
            vault.decrypt(account, table, row_id, other_column, ct)
