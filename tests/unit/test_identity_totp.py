"""TOTP (SPEC I3): enrolment, one step of skew, a code works once; recovery codes."""

from __future__ import annotations

import base64
import re
import threading
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlparse

import pyotp
import pytest

from sealflow.identity import totp
from sealflow.identity.totp import (
    hash_recovery_code,
    match_recovery_code,
    new_recovery_codes,
    new_secret,
    provisioning_uri,
    qr_svg,
    time_step,
    verify,
)

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
NOW = datetime(2030, 1, 2, 3, 4, 15, tzinfo=UTC)  # 15 s into its 30 s step
PEPPER = b"r" * 32


def code_at(when: datetime, secret: str = SECRET) -> str:
    return pyotp.TOTP(secret).at(when)


# --- enrolment ------------------------------------------------------------------------------


def test_new_secrets_are_160_random_bits() -> None:
    secrets_ = {new_secret() for _ in range(50)}
    assert len(secrets_) == 50
    for secret in secrets_:
        assert len(base64.b32decode(secret)) == 20


def test_provisioning_uri() -> None:
    uri = provisioning_uri(SECRET, "alice@example.com", "Sealflow (eu)")
    parts = urlparse(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Sealflow (eu):alice@example.com"
    query = parse_qs(parts.query)
    assert query["secret"] == [SECRET] and query["issuer"] == ["Sealflow (eu)"]
    parsed = pyotp.parse_uri(uri)  # what an app reads back
    assert isinstance(parsed, pyotp.TOTP)
    assert parsed.at(NOW) == code_at(NOW)


def test_qr_svg_is_inline_svg_of_the_uri() -> None:
    uri = provisioning_uri(SECRET, "alice@example.com", "Sealflow")
    svg = qr_svg(uri)
    assert svg.startswith("<svg") and "<?xml" not in svg
    root = ET.fromstring(svg)
    assert root.tag == "svg" and root.find("path") is not None
    assert root.find("title") is not None
    assert qr_svg(uri) == svg  # a function of the URI alone
    assert qr_svg(uri.replace("alice", "bob")) != svg
    assert SECRET not in svg  # the secret is in the picture, not in readable text


# --- verification ---------------------------------------------------------------------------


def test_the_current_code_is_accepted_and_returns_its_step() -> None:
    assert verify(SECRET, code_at(NOW), now=NOW, last_step=None) == time_step(NOW)
    assert time_step(NOW) == int(NOW.timestamp()) // 30


def test_one_step_of_skew_either_way_and_no_more() -> None:
    step = time_step(NOW)
    assert verify(SECRET, code_at(NOW - timedelta(seconds=30)), now=NOW, last_step=None) == (
        step - 1
    )
    assert verify(SECRET, code_at(NOW + timedelta(seconds=30)), now=NOW, last_step=None) == (
        step + 1
    )
    for off in (-60, 60, 3600):
        assert (
            verify(SECRET, code_at(NOW + timedelta(seconds=off)), now=NOW, last_step=None) is None
        )


def test_a_code_is_accepted_once_only() -> None:
    code = code_at(NOW)
    step = verify(SECRET, code, now=NOW, last_step=None)
    assert step is not None
    # Replayed within its validity (up to a step later), against the stored step: refused.
    assert verify(SECRET, code, now=NOW, last_step=step) is None
    assert verify(SECRET, code, now=NOW + timedelta(seconds=30), last_step=step) is None
    # Older codes too, even if still inside the skew window.
    assert verify(SECRET, code_at(NOW - timedelta(seconds=30)), now=NOW, last_step=step) is None
    # The next step's code is fresh.
    later = NOW + timedelta(seconds=30)
    assert verify(SECRET, code_at(later), now=later, last_step=step) == step + 1


def test_racing_requests_with_one_code_exactly_one_succeeds() -> None:
    """The compare-and-set the store will do, here over a dict under a lock: each request
    reads last_step, verifies, and stores the step only if last_step is unchanged."""
    stored: dict[str, int | None] = {"last_step": None}
    lock = threading.Lock()
    code = code_at(NOW)
    results: list[bool] = []
    start = threading.Barrier(8)

    def attempt() -> None:
        start.wait()
        seen = stored["last_step"]
        step = verify(SECRET, code, now=NOW, last_step=seen)
        with lock:
            won = step is not None and stored["last_step"] == seen
            if won:
                stored["last_step"] = step
            results.append(won)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    assert stored["last_step"] == time_step(NOW)


@pytest.mark.parametrize("shape", ["{} {}", " {}{} ", "{}\t{}"])
def test_codes_with_spaces_are_accepted(shape: str) -> None:
    code = code_at(NOW)
    assert verify(SECRET, shape.format(code[:3], code[3:]), now=NOW, last_step=None) is not None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "abcdef", "١٢٣٤٥٦", "12345a", "-12345"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert verify(SECRET, code, now=NOW, last_step=None) is None


def test_a_wrong_code_is_refused() -> None:
    good = {code_at(NOW + timedelta(seconds=30 * k)) for k in (-1, 0, 1)}
    wrong = next(c for c in ("000000", "111111", "222222") if c not in good)
    assert verify(SECRET, wrong, now=NOW, last_step=None) is None


def test_the_clock_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        verify(SECRET, "123456", now=datetime(2030, 1, 1), last_step=None)


# --- recovery codes -------------------------------------------------------------------------


def test_ten_recovery_codes_of_80_bits() -> None:
    codes = new_recovery_codes()
    assert len(codes) == totp.RECOVERY_CODES == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(r"[0-9a-hjkmnp-tv-z]{4}(-[0-9a-hjkmnp-tv-z]{4}){3}", code)
    # 16 symbols of a 32-symbol alphabet: 80 bits (at least 50 asked).
    assert len(totp._ALPHABET) == 32 and totp._RECOVERY_LENGTH * 5 >= 50
    assert len(new_recovery_codes(3)) == 3


def test_recovery_codes_match_once_stored_hashed() -> None:
    codes = new_recovery_codes()
    hashes: list[str | None] = [hash_recovery_code(c, pepper=PEPPER) for c in codes]
    assert all(h is not None and h.startswith("hmac-sha256$") for h in hashes)
    assert not any(c.replace("-", "") in str(hashes) for c in codes)
    index = match_recovery_code(codes[3], hashes, pepper=PEPPER)
    assert index == 3
    hashes[index] = None  # the store deletes it, atomically: single use
    assert match_recovery_code(codes[3], hashes, pepper=PEPPER) is None
    assert match_recovery_code(codes[4], hashes, pepper=PEPPER) == 4


def test_recovery_codes_forgive_how_they_are_typed() -> None:
    code = "0a1b-2c3d-4e5f-6g7h"
    hashes: list[str | None] = [hash_recovery_code(code, pepper=PEPPER)]
    for typed in (
        "0A1B 2C3D 4E5F 6G7H",
        "0a1b2c3d4e5f6g7h",
        " 0a1b-2c3d-4e5f-6g7h\n",
        "Oa1b-2c3d-4e5f-6g7h",
    ):  # O read as zero
        assert match_recovery_code(typed, hashes, pepper=PEPPER) == 0
    assert hash_recovery_code("1111-2222-3333-4444", pepper=PEPPER) == hash_recovery_code(
        "iIlL-2222-3333-4444", pepper=PEPPER
    )


def test_wrong_or_malformed_recovery_codes_do_not_match() -> None:
    codes = new_recovery_codes(2)
    hashes: list[str | None] = [hash_recovery_code(c, pepper=PEPPER) for c in codes]
    for bad in (
        "",
        "0a1b-2c3d-4e5f",
        "0a1b-2c3d-4e5f-6g7h-8j9k",
        "uuuu-uuuu-uuuu-uuuu",
        "0000-0000-0000-0000",
    ):
        assert match_recovery_code(bad, hashes, pepper=PEPPER) is None
    assert match_recovery_code(codes[0], hashes, pepper=b"s" * 32) is None  # another pepper
    with pytest.raises(ValueError, match="not a recovery code"):
        hash_recovery_code("not one", pepper=PEPPER)
