"""The vault facade (S3, S4, S6, S7): what the rest of sealflow calls to encrypt customer data.

One `Vault` per region cell. Each account has a Tink AES256_GCM keyset (its data key), kept
in the region's key store wrapped by the region's key-encryption key (KEK) from a key
provider.

Ciphertext format (version 1): one format byte 0x01, then Tink's ciphertext (its 5-byte
prefix names the data key, then nonce, ciphertext and tag). The associated data binds each
ciphertext to its place: the label `sealflow/data/v1`, then region, account, table, row id
and column, each as a 4-byte big-endian length and its UTF-8 bytes, so no two different
places encode the same and a ciphertext moved elsewhere does not decrypt. Wrapped keysets are
bound the same way to (region, account).

Unwrapped keysets are cached (LRU, bounded) for `cache_ttl_s` seconds of the injected clock;
a shred or rotation in this process drops the entry at once; one made by another process is
seen within the TTL (and a ciphertext of a data key the cached keyset lacks reloads it).
Tombstones are checked on every load, before the keyset row is read.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sealflow.clock import Clock
from sealflow.monitoring.metrics import metrics
from sealflow.vault._aead import Keyset, key_id_of, prefix_of
from sealflow.vault.errors import DecryptionFailed, KeyVersionError
from sealflow.vault.keystore import KeyStore, RewrapProgress, WrappedKeyset
from sealflow.vault.providers.base import KeyProvider

FORMAT_V1 = 1
_DATA_LABEL = b"sealflow/data/v1"
_KEYSET_LABEL = b"sealflow/keyset/v1"


def encode_aad(label: bytes, *parts: str) -> bytes:
    """Canonical, unambiguous associated data: the label then each part length-prefixed."""
    out = [struct.pack(">I", len(label)), label]
    for part in parts:
        raw = part.encode("utf-8")
        out.append(struct.pack(">I", len(raw)))
        out.append(raw)
    return b"".join(out)


@dataclass(frozen=True)
class VaultStatus:
    region: str
    provider: dict[str, object]
    kek_version: int
    keysets_by_kek_version: dict[int, int]
    shredded_accounts: int
    cached_keysets: int


@dataclass
class _Cached:
    keyset: Keyset
    loaded_at: float


class Vault:
    """Envelope encryption for one region. Thread-safe."""

    def __init__(
        self,
        region: str,
        keystore: KeyStore,
        provider: KeyProvider,
        clock: Clock,
        *,
        cache_size: int = 1024,
        cache_ttl_s: float = 30.0,
    ) -> None:
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        if cache_ttl_s <= 0:
            raise ValueError("cache_ttl_s must be positive")
        self.region = region
        self._store = keystore
        self._provider = provider
        self._clock = clock
        self._cache_size = cache_size
        self._ttl = cache_ttl_s
        self._cache: OrderedDict[str, _Cached] = OrderedDict()
        self._generation = 0  # bumped by every shred and rotation in this process
        self._lock = threading.Lock()

    @property
    def cache_ttl_s(self) -> float:
        """How long an unwrapped keyset is reused before the key store is read again."""
        return self._ttl

    # -- data ------------------------------------------------------------------------------
    def encrypt(
        self, account_id: str, table: str, row_id: str | int, column: str, plaintext: bytes
    ) -> bytes:
        keyset = self._keyset(account_id, create=True)
        aad = self._data_aad(account_id, table, row_id, column)
        return bytes([FORMAT_V1]) + keyset.encrypt(plaintext, aad)

    def decrypt(
        self, account_id: str, table: str, row_id: str | int, column: str, ciphertext: bytes
    ) -> bytes:
        """The plaintext, or DecryptionFailed (wrong place, altered, unknown or retired key;
        counted in the metrics, A3/A4) or AccountShredded."""
        try:
            return self._decrypt(account_id, table, row_id, column, ciphertext)
        except DecryptionFailed:
            metrics().decryption_failed("data")
            raise

    def _decrypt(
        self, account_id: str, table: str, row_id: str | int, column: str, ciphertext: bytes
    ) -> bytes:
        if not ciphertext or ciphertext[0] != FORMAT_V1:
            # Still check the account first: a shredded account says so, whatever the input.
            self._keyset(account_id, create=False)
            raise DecryptionFailed()
        body = ciphertext[1:]
        keyset = self._keyset(account_id, create=False)
        key_id = key_id_of(body)
        if key_id is not None and key_id not in keyset.key_ids:
            keyset = self._keyset(account_id, create=False, fresh=True)  # rotated elsewhere
        return keyset.decrypt(body, self._data_aad(account_id, table, row_id, column))

    def reencrypt(
        self, account_id: str, table: str, row_id: str | int, column: str, ciphertext: bytes
    ) -> bytes:
        """The same plaintext sealed again, at the same place, under the account's current
        primary data key (`keys rotate-data`); the plaintext never leaves the vault. Raises as
        `decrypt` does."""
        plaintext = self.decrypt(account_id, table, row_id, column, ciphertext)
        return self.encrypt(account_id, table, row_id, column, plaintext)

    @staticmethod
    def ciphertext_prefix(key_id: int) -> bytes:
        """The first bytes of every ciphertext of data key `key_id` (format byte and Tink
        prefix), so stored values can be matched to their key without decrypting."""
        return bytes([FORMAT_V1]) + prefix_of(key_id)

    @staticmethod
    def data_key_id(ciphertext: bytes) -> int | None:
        """The id of the data key that made a ciphertext (for `keys status` counts)."""
        if not ciphertext or ciphertext[0] != FORMAT_V1:
            return None
        return key_id_of(ciphertext[1:])

    def needs_reencryption(self, account_id: str, ciphertext: bytes) -> bool:
        """True when the ciphertext was not made by the account's current primary data key
        (what `keys rotate-data` re-encrypts in batches)."""
        return self.data_key_id(ciphertext) != self._keyset(account_id, create=False).primary_key_id

    # -- data keys -------------------------------------------------------------------------
    def rotate_data_key(self, account_id: str) -> int:
        """Adds a new primary data key to the account's keyset and returns its id. Older keys
        still decrypt until their data is re-encrypted."""
        while True:
            stored = self._load_stored(account_id, create=True)
            rotated = self._unwrap(stored).with_new_primary()
            version = self._provider.version
            blob = rotated.wrap(self._provider, self._keyset_aad(account_id))
            swapped = self._store.replace(
                account_id, expected=stored.blob, blob=blob, kek_version=version, rotated=True
            )
            self._forget(account_id)
            if swapped:
                return rotated.primary_key_id

    def create_keyset(self, account_id: str) -> int:
        """Make the account's keyset now (otherwise made on its first seal); returns the
        primary data key id. A no-op for an account that has one."""
        return self._keyset(account_id, create=True).primary_key_id

    def data_key_ids(self, account_id: str) -> tuple[int, ...]:
        """The account's data key ids, oldest first; the last is the primary."""
        return self._keyset(account_id, create=False, fresh=True).key_ids

    def primary_data_key_id(self, account_id: str) -> int:
        """The account's current primary data key, read from the key store (not the cache)."""
        return self._keyset(account_id, create=False, fresh=True).primary_key_id

    def primary_settled_at(self, account_id: str) -> datetime:
        """From when on every process sharing this key store (and this cache TTL) encrypts
        with the account's current primary data key: its last rotation plus the cache TTL.
        Until then a process may still hold the older keyset in its cache and seal new
        values under an older key."""
        stored = self._store.get(account_id)  # AccountShredded when tombstoned
        if stored is None:
            return self._clock.now()
        changed = stored.rotated_at or stored.created_at
        return changed + timedelta(seconds=self._ttl)

    def remove_data_keys(self, account_id: str, key_ids: Iterable[int]) -> tuple[int, ...]:
        """Deletes older data keys from the account's keyset and returns the ids removed (ids
        already gone are skipped, so a retry is harmless). Their ciphertexts then fail with
        DecryptionFailed for good: call this only once none is left (`keys rotate-data`).
        The primary cannot be removed (KeyVersionError)."""
        wanted = set(key_ids)
        while True:
            stored = self._load_stored(account_id, create=False)
            keyset = self._unwrap(stored)
            drop = tuple(k for k in keyset.key_ids if k in wanted)
            if not drop:
                return ()
            smaller = keyset.without_keys(drop)  # refuses the primary
            blob = smaller.wrap(self._provider, self._keyset_aad(account_id))
            swapped = self._store.replace(
                account_id,
                expected=stored.blob,
                blob=blob,
                kek_version=self._provider.version,
                rotated=False,
            )
            self._forget(account_id)
            if swapped:
                return drop

    # -- shredding -------------------------------------------------------------------------
    def shred(self, account_id: str) -> bool:
        """Destroys the account's data key (S7). From then on encrypt and decrypt for it raise
        AccountShredded. True the first time, False when already shredded."""
        first = self._store.shred(account_id)
        self._forget(account_id)
        return first

    def is_shredded(self, account_id: str) -> bool:
        return self._store.is_shredded(account_id)

    # -- the KEK ---------------------------------------------------------------------------
    def rotate_kek(self) -> int:
        """A new KEK version; follow with `rewrap` until done."""
        return self._provider.rotate()

    def rewrap(self, batch_size: int = 100) -> RewrapProgress:
        """One batch of rewrapping keysets under the current KEK version (resumable)."""

        def rewrap_one(stored: WrappedKeyset) -> bytes:
            aad = self._keyset_aad(stored.account_id)
            return self._unwrap(stored).wrap(self._provider, aad)

        return self._store.rewrap(
            rewrap_one, to_version=self._provider.version, batch_size=batch_size
        )

    def retire_kek(self, version: int) -> None:
        """Retires `version` and every older KEK version, refusing while any keyset is still
        wrapped under one of them (that keyset, and its account's data, would be lost)."""
        current = self._provider.version
        if version >= current:
            raise KeyVersionError(
                f"cannot retire KEK version {version} of region {self.region}: the current "
                f"version is {current}; rotate first (`sealflow keys rotate`)"
            )
        behind = sum(n for v, n in self._store.kek_version_counts().items() if v <= version)
        if behind:
            raise KeyVersionError(
                f"{behind} account keysets of region {self.region} are still wrapped under "
                f"KEK version {version} or older; finish the rotation (`sealflow keys rotate`) "
                "before retiring it"
            )
        self._provider.retire(version)

    def status(self) -> VaultStatus:
        with self._lock:
            cached = len(self._cache)
        return VaultStatus(
            region=self.region,
            provider=self._provider.describe(),
            kek_version=self._provider.version,
            keysets_by_kek_version=self._store.kek_version_counts(),
            shredded_accounts=self._store.shredded_count(),
            cached_keysets=cached,
        )

    # -- inside ----------------------------------------------------------------------------
    def _data_aad(self, account_id: str, table: str, row_id: str | int, column: str) -> bytes:
        return encode_aad(_DATA_LABEL, self.region, account_id, table, str(row_id), column)

    def _keyset_aad(self, account_id: str) -> bytes:
        return encode_aad(_KEYSET_LABEL, self.region, account_id)

    def _unwrap(self, stored: WrappedKeyset) -> Keyset:
        try:
            return Keyset.unwrap(stored.blob, self._provider, self._keyset_aad(stored.account_id))
        except DecryptionFailed:  # say which keyset and which KEK version: the usual cause
            metrics().decryption_failed("keyset")
            raise DecryptionFailed(
                f"the keyset of account {stored.account_id} (KEK version {stored.kek_version}) "
                "could not be unwrapped: that KEK version is retired, or the keyset was "
                "altered or moved"
            ) from None

    def _load_stored(self, account_id: str, *, create: bool) -> WrappedKeyset:
        stored = self._store.get(account_id)  # AccountShredded when tombstoned
        if stored is not None:
            return stored
        if not create:
            raise DecryptionFailed("the account has no data key")
        version = self._provider.version
        blob = Keyset.generate().wrap(self._provider, self._keyset_aad(account_id))
        return self._store.insert(account_id, blob, version)

    def _keyset(self, account_id: str, *, create: bool, fresh: bool = False) -> Keyset:
        now = self._clock.monotonic()
        with self._lock:
            entry = self._cache.get(account_id)
            if entry is not None:
                if not fresh and now - entry.loaded_at < self._ttl:
                    self._cache.move_to_end(account_id)
                    return entry.keyset
                del self._cache[account_id]  # expired or refused: reload
            generation = self._generation
        keyset = self._unwrap(self._load_stored(account_id, create=create))
        with self._lock:
            if self._generation == generation:  # no shred or rotation meanwhile
                self._cache[account_id] = _Cached(keyset, now)
                self._cache.move_to_end(account_id)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return keyset

    def _forget(self, account_id: str) -> None:
        with self._lock:
            self._cache.pop(account_id, None)
            self._generation += 1
