"""The vault's errors. Every message is fixed text plus identifiers (account ids, key
versions, file names): never plaintext, key material or ciphertext."""

from __future__ import annotations

from sealflow.core.errors import SealflowError


class DecryptionFailed(SealflowError):
    """The one error of every failed decryption (like pyca's InvalidToken): wrong key, wrong
    place (associated data), altered or truncated ciphertext, retired key version. Retrying
    the same call cannot help."""

    code = "decryption_failed"
    retryable = False

    def __init__(self, message: str = "the ciphertext could not be decrypted") -> None:
        super().__init__(message)


class AccountShredded(SealflowError):
    """The account's data key was destroyed (S7): its data can never be read or written."""

    code = "account_shredded"
    retryable = False

    def __init__(self, account_id: str) -> None:
        super().__init__(f"the keys of account {account_id!r} were shredded")
        self.account_id = account_id


class KeyProviderUnavailable(SealflowError):
    """The key provider could not be reached or answered with a server error: a later retry
    may succeed."""

    code = "key_provider_unavailable"
    retryable = True


class KeyProviderError(SealflowError):
    """The key provider refused the request (bad token, missing key, bad configuration):
    retrying will not help until the operator fixes it."""

    code = "key_provider_error"
    retryable = False


class KeyFileInsecure(SealflowError):
    """The local key file can be read by group or others: sealflow refuses to start."""

    code = "key_file_insecure"
    retryable = False


class KeyVersionError(SealflowError):
    """A key-version operation that would break readability (retiring the current version,
    retiring one still in use, an unknown version)."""

    code = "key_version_error"
    retryable = False
