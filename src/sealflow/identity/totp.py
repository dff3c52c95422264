"""TOTP second factor (RFC 6238, pyotp) and recovery codes. Pure functions: the caller keeps
the secret (encrypted by the vault: it must be readable to check codes, so it is not hashed),
the last accepted time step and the recovery-code hashes, and stores a new last step with a
compare-and-set so that two requests racing with one code cannot both win."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from datetime import datetime

import pyotp
import segno

STEP_SECONDS = 30
DIGITS = 6
SKEW_STEPS = 1  # one step either side: a phone's clock a little off still works
RECOVERY_CODES = 10

_CODE = re.compile(rf"[0-9]{{{DIGITS}}}")  # not \d, which matches every script's digits


def new_secret() -> str:
    """160 random bits in base32, the size RFC 4226 recommends."""
    return pyotp.random_base32(32)


def provisioning_uri(secret: str, account_name: str, issuer: str) -> str:
    """The otpauth:// URI an authenticator app enrols from (shown as a QR code)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The URI as an inline SVG QR code (no image library, no <?xml?> prologue)."""
    return segno.make(uri, error="m").svg_inline(scale=4, title="Authenticator QR code")


def time_step(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp()) // STEP_SECONDS


def verify(secret: str, code: str, *, now: datetime, last_step: int | None) -> int | None:
    """The time step `code` belongs to, if it is valid at `now` (one step of skew) and newer
    than `last_step`, the step of the last code accepted; else None. The caller must store the
    returned step only if the stored one is still `last_step` (compare-and-set), and treat a
    lost race as a failure: that is what makes a code work once."""
    code = "".join(code.split())  # apps show "123 456"
    if not _CODE.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = time_step(now)
    accepted = None
    for step in range(current - SKEW_STEPS, current + SKEW_STEPS + 1):
        # Every candidate is compared, in constant time, whether or not one matched.
        if hmac.compare_digest(totp.generate_otp(step), code) and (
            last_step is None or step > last_step
        ):
            accepted = step
    return accepted


# --- recovery codes -------------------------------------------------------------------------
# Crockford's base32 alphabet: no i, l, o or u, so a code read aloud or copied by hand
# survives. 16 characters = 80 random bits, shown as xxxx-xxxx-xxxx-xxxx.
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RECOVERY_LENGTH = 16
_CONFUSABLE = str.maketrans({"i": "1", "l": "1", "o": "0"})


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    codes = []
    for _ in range(n):
        raw = "".join(secrets.choice(_ALPHABET) for _ in range(_RECOVERY_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _RECOVERY_LENGTH, 4)))
    return codes


def _normalize_recovery(code: str) -> str | None:
    raw = "".join(code.split()).replace("-", "").lower().translate(_CONFUSABLE)
    if len(raw) != _RECOVERY_LENGTH or any(c not in _ALPHABET for c in raw):
        return None
    return raw


def hash_recovery_code(code: str, *, pepper: bytes) -> str:
    """HMAC-SHA256 under a pepper, not bcrypt: a code carries 80 random bits, so no offline
    guessing can reach it however fast the hash, and a slow hash would make each attempt cost
    ten bcrypt runs (one per stored code, each with its own salt) for nothing. The pepper,
    kept outside the database, means a database write cannot plant a known code."""
    raw = _normalize_recovery(code)
    if raw is None:
        raise ValueError("not a recovery code")
    return "hmac-sha256$" + hmac.new(pepper, raw.encode("ascii"), hashlib.sha256).hexdigest()


def match_recovery_code(code: str, hashes: Sequence[str | None], *, pepper: bytes) -> int | None:
    """The index in `hashes` of the code given, or None. A used code's slot should be None
    (or removed): deleting it atomically is what makes a code single-use."""
    raw = _normalize_recovery(code)
    if raw is None:
        return None
    given = hash_recovery_code(raw, pepper=pepper)
    found = None
    for index, stored in enumerate(hashes):  # no early exit: the time says nothing
        if stored is not None and hmac.compare_digest(given, stored):
            found = index
    return found
