"""The region's checkpoint signing key: Ed25519 (pyca/cryptography), in
`<data_dir>/keys/audit-<region>.ed25519` (PKCS#8 PEM, mode 0600, created on first use), never
in the database, so whoever can rewrite the database file cannot re-sign its history.
The public key (printed by `sealflow audit key`) is what auditors keep to check checkpoints."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)


class AuditKeyError(Exception):
    """The signing key file is missing, unreadable, not private, or not an Ed25519 key."""


def key_path(data_dir: Path, region: str) -> Path:
    return data_dir / "keys" / f"audit-{region}.ed25519"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True)
class Verifier:
    public: Ed25519PublicKey

    @property
    def key_id(self) -> str:
        return key_id(self.public)

    def verify(self, message: bytes, signature_b64: str) -> bool:
        try:
            self.public.verify(base64.b64decode(signature_b64, validate=True), message)
        except (InvalidSignature, ValueError):
            return False
        return True

    def public_b64(self) -> str:
        raw = self.public.public_bytes(serialization.Encoding.Raw,
                                       serialization.PublicFormat.Raw)
        return base64.b64encode(raw).decode()

    @classmethod
    def from_b64(cls, text: str) -> Verifier:
        try:
            return cls(Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True)))
        except ValueError as err:
            raise AuditKeyError(f"not an Ed25519 public key: {err}") from err


class Signer:
    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        self.verifier = Verifier(private.public_key())
        self.key_id = self.verifier.key_id

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self._private.sign(message)).decode()

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id})"

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def load(cls, path: Path, *, create: bool = False) -> Signer:
        """Read the key file; with `create`, make it (0600, exclusive) when it does not exist.
        Refuses a file others can read."""
        if create and not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            private = Ed25519PrivateKey.generate()
            pem = private.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption())
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                pass
            else:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(pem)
                    fh.flush()
                    os.fsync(fh.fileno())
        try:
            st = path.stat()
            if stat.S_IMODE(st.st_mode) & 0o077:
                raise AuditKeyError(f"audit key {path} is readable by others; chmod 600 it")
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        except OSError as err:
            raise AuditKeyError(f"cannot read audit key {path}: {err.strerror}") from err
        except ValueError as err:
            raise AuditKeyError(f"audit key {path} is not a PEM private key") from err
        if not isinstance(loaded, Ed25519PrivateKey):
            raise AuditKeyError(f"audit key {path} is not an Ed25519 key")
        return cls(loaded)
