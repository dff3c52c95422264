"""The one place that hashes passwords (DESIGN house rule 4). A registry in the manner of
Django's hashers: the first hasher hashes, every registered one verifies, and `verify` says
when a stored hash should be replaced (older algorithm, lower cost, retired pepper), so the
login that proved the password can store `hash(password)` in its place.

Stored form: `bcrypt-hmac-sha384$<pepper id>$<bcrypt hash>`, for example
`bcrypt-hmac-sha384$1$$2b$12$...`. The cost is the bcrypt hash's own `$12$`.

Why bcrypt over base64(HMAC-SHA384(pepper, password)) and not bcrypt(password):
- bcrypt reads 72 bytes at most, so two passwords sharing their first 72 bytes would be the
  same password; the HMAC digest is 48 bytes (64 in base64) whatever the password's length.
- base64 has no NUL byte, which bcrypt would treat as the end of the password.
- the pepper lives with the key provider, not in the database: a stolen database alone can
  neither be brute-forced offline nor be used to plant a hash for a password an attacker
  knows.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import bcrypt

DEFAULT_ROUNDS = 12
MIN_PEPPER_BYTES = 32


@dataclass(frozen=True)
class Verified:
    ok: bool
    needs_rehash: bool = False


def normalize(password: str) -> bytes:
    """NFKC (NIST SP 800-63B 5.1.1.2), so the same password typed on another keyboard or OS
    matches. `surrogatepass`: text that is not valid Unicode (a lone surrogate) hashes instead
    of raising; the password policy refuses it as a new password."""
    return unicodedata.normalize("NFKC", password).encode("utf-8", "surrogatepass")


def _bcrypt_rounds(hashed: bytes) -> int | None:
    parts = hashed.split(b"$")  # b"", b"2b", b"12", salt+digest
    if len(parts) != 4 or not parts[2].isdigit():
        return None
    return int(parts[2])


class Hasher(Protocol):
    """One algorithm. `verify` and `must_update` get the stored string after `algorithm$`."""

    algorithm: str

    def verify(self, password: str, rest: str) -> bool: ...

    def must_update(self, rest: str) -> bool: ...


class BcryptHmacSha384:
    algorithm = "bcrypt-hmac-sha384"

    def __init__(
        self,
        pepper: bytes,
        *,
        rounds: int = DEFAULT_ROUNDS,
        pepper_id: str = "1",
        previous_peppers: Mapping[str, bytes] | None = None,
    ) -> None:
        peppers = {**(previous_peppers or {}), pepper_id: pepper}
        for pid, key in peppers.items():
            if not isinstance(key, bytes) or len(key) < MIN_PEPPER_BYTES:
                raise ValueError(f"pepper {pid!r} must be at least {MIN_PEPPER_BYTES} bytes")
            if not pid or "$" in pid:
                raise ValueError("a pepper id must be non-empty and contain no '$'")
        if not 4 <= rounds <= 31:
            raise ValueError("bcrypt rounds must be between 4 and 31")
        self._peppers = peppers
        self._pepper_id = pepper_id
        self.rounds = rounds

    def __repr__(self) -> str:  # the peppers never print
        return f"BcryptHmacSha384(rounds={self.rounds}, pepper_id={self._pepper_id!r})"

    def _prehash(self, password: str, pepper: bytes) -> bytes:
        digest = hmac.new(pepper, normalize(password), hashlib.sha384).digest()
        return base64.b64encode(digest)

    def hash(self, password: str) -> str:
        prehash = self._prehash(password, self._peppers[self._pepper_id])
        hashed = bcrypt.hashpw(prehash, bcrypt.gensalt(self.rounds)).decode("ascii")
        return f"{self.algorithm}${self._pepper_id}${hashed}"

    def verify(self, password: str, rest: str) -> bool:
        pepper_id, _, hashed = rest.partition("$")
        pepper = self._peppers.get(pepper_id)
        try:
            if pepper is not None:
                return bcrypt.checkpw(self._prehash(password, pepper), hashed.encode("ascii"))
        except ValueError:  # a damaged hash: a failure like any other
            pass
        self.dummy_verify(password)  # and in the usual time
        return False

    def must_update(self, rest: str) -> bool:
        pepper_id, _, hashed = rest.partition("$")
        rounds = _bcrypt_rounds(hashed.encode("ascii", "replace"))
        # Only ever upward: lowering the setting (tests, a slow box) leaves strong hashes alone.
        return pepper_id != self._pepper_id or rounds is None or rounds < self.rounds

    def dummy_verify(self, password: str) -> None:
        """As long as a real verify: the same HMAC and one bcrypt at the configured cost,
        against a random salt (checkpw re-hashes with the stored salt, then compares)."""
        fake = bcrypt.gensalt(self.rounds) + b"." * 31
        bcrypt.checkpw(self._prehash(password, self._peppers[self._pepper_id]), fake)


class LegacyBcrypt:
    """Verifies plain bcrypt hashes imported from another system (`bcrypt$$2b$10$...`, the
    Django form), so their users can log in once and be upgraded. Not registered by default:
    with it, whoever can write the database can set a password without the pepper.
    They were made from the password's own UTF-8 bytes (no NFKC), of which bcrypt read the
    first 72; verify does the same."""

    algorithm = "bcrypt"

    def verify(self, password: str, rest: str) -> bool:
        try:
            raw = password.encode("utf-8", "surrogatepass")[:72]
            return bcrypt.checkpw(raw, rest.encode("ascii"))
        except ValueError:
            return False

    def must_update(self, rest: str) -> bool:
        return True


class PasswordHasher:
    """`hash` with the preferred hasher (bcrypt-hmac-sha384 under the current pepper);
    `verify` with whichever hasher made the stored hash. `previous_peppers` (id -> pepper)
    keep hashes made under a retired pepper verifiable until their users next log in."""

    def __init__(
        self,
        pepper: bytes,
        *,
        rounds: int = DEFAULT_ROUNDS,
        pepper_id: str = "1",
        previous_peppers: Mapping[str, bytes] | None = None,
        legacy: Sequence[Hasher] = (),
    ) -> None:
        self._preferred = BcryptHmacSha384(
            pepper, rounds=rounds, pepper_id=pepper_id, previous_peppers=previous_peppers
        )
        self._by_algorithm: dict[str, Hasher] = {h.algorithm: h for h in legacy}
        self._by_algorithm[self._preferred.algorithm] = self._preferred

    def __repr__(self) -> str:
        return f"PasswordHasher({self._preferred!r}, legacy={sorted(self._by_algorithm)})"

    @property
    def rounds(self) -> int:
        return self._preferred.rounds

    def hash(self, password: str) -> str:
        return self._preferred.hash(password)

    def verify(self, password: str, encoded: str) -> Verified:
        algorithm, _, rest = encoded.partition("$")
        hasher = self._by_algorithm.get(algorithm)
        if hasher is None:  # unknown or damaged: fail in the usual time
            self.dummy_verify(password)
            return Verified(ok=False)
        if not hasher.verify(password, rest):
            return Verified(ok=False)
        return Verified(ok=True, needs_rehash=hasher.must_update(rest))

    def dummy_verify(self, password: str = "") -> Verified:
        """For an unknown user: the same work as a real failure, so response times do not
        tell which user names exist. Always fails."""
        self._preferred.dummy_verify(password)
        return Verified(ok=False)
