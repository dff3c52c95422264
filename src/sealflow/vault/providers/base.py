"""The key-provider seam. A provider holds a region's key-encryption key (KEK) as a list of
versions and acts as an AEAD over small payloads (the account keysets); it never sees
customer data.

Versions are positive integers that only grow: `rotate()` makes a new current version that
`encrypt` uses from then on; every enabled version still decrypts until `retire(version)`,
after which ciphertexts of that version (and of every older one) no longer decrypt.

A cloud KMS (AWS KMS, Google Cloud KMS, Azure Key Vault) plugs in as one more class with
these six members, in its own module under `providers/`, built by bootstrap from typed
settings:

- `encrypt` / `decrypt`: the KMS's Encrypt/Decrypt calls with the aad as its "encryption
  context" / "additional authenticated data"; network failures and throttling raise
  `KeyProviderUnavailable` (retryable), refusals `KeyProviderError`, and a ciphertext the
  KMS rejects `DecryptionFailed`;
- `version`: the KMS's primary key version, mapped to a growing integer (for example the
  position of the version in the key's version list);
- `rotate()`: create a key version and make it primary;
- `retire(version)`: disable (or schedule destruction of) the versions up to `version`;
- `describe()`: kind, key name and current version for health pages; never credentials.

Providers must raise only the errors of `sealflow.vault.errors` and must be safe to call
from several threads.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class KeyProvider(Protocol):
    """A region's key-encryption key, seen as an AEAD with versions."""

    def encrypt(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypts under the current version, binding `aad`."""
        ...

    def decrypt(self, ciphertext: bytes, aad: bytes) -> bytes:
        """Decrypts with whichever enabled version made the ciphertext, or raises
        DecryptionFailed."""
        ...

    @property
    def version(self) -> int:
        """The current version: the one `encrypt` uses."""
        ...

    def rotate(self) -> int:
        """Makes a new current version and returns it."""
        ...

    def retire(self, version: int) -> None:
        """Stops `version` (and every older one) from decrypting. The current version cannot
        be retired."""
        ...

    def describe(self) -> dict[str, object]:
        """What health pages show: kind, location, current version. Never a secret."""
        ...
