"""Password hashing (SPEC I2) and the password policy. Cost 4 for speed, except where the
test is about cost 12 itself."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from typing import Any

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealflow.core.errors import InvalidInput
from sealflow.identity.password_policy import (
    MAX_LENGTH,
    MIN_LENGTH,
    check_password,
    common_passwords,
    password_issues,
)
from sealflow.identity.passwords import (
    BcryptHmacSha384,
    LegacyBcrypt,
    PasswordHasher,
    Verified,
)

PEPPER = b"p" * 32
OTHER_PEPPER = b"q" * 32


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(PEPPER, rounds=4)


def _rounds(encoded: str) -> int:
    return int(encoded.split("$")[4])


# --- hashing --------------------------------------------------------------------------------


def test_default_cost_is_12_and_a_hash_at_12_verifies() -> None:
    hasher = PasswordHasher(PEPPER)
    encoded = hasher.hash("correct horse battery staple")
    assert encoded.startswith("bcrypt-hmac-sha384$1$$2b$12$")
    assert hasher.rounds == 12 and _rounds(encoded) == 12
    assert hasher.verify("correct horse battery staple", encoded) == Verified(True, False)


def test_a_1000_character_password_works(hasher: PasswordHasher) -> None:
    password = "ab€" * 333 + "z"  # 1,000 characters, 1,334 bytes
    assert len(password) == 1000
    encoded = hasher.hash(password)
    assert hasher.verify(password, encoded).ok
    assert not hasher.verify(password[:-1] + "y", encoded).ok
    assert not hasher.verify(password[:-1], encoded).ok


def test_passwords_equal_in_their_first_72_bytes_are_different(hasher: PasswordHasher) -> None:
    first = "x" * 72 + "first"
    second = "x" * 72 + "second"
    assert first.encode()[:72] == second.encode()[:72]
    encoded = hasher.hash(first)
    assert hasher.verify(first, encoded).ok
    assert not hasher.verify(second, encoded).ok
    assert not hasher.verify("x" * 72, encoded).ok


def test_the_stored_form_is_bcrypt_over_base64_hmac_sha384(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("a password of mine")
    algorithm, pepper_id, bcrypt_hash = encoded.split("$", 2)
    assert (algorithm, pepper_id) == ("bcrypt-hmac-sha384", "1")
    prehash = base64.b64encode(hmac.new(PEPPER, b"a password of mine", hashlib.sha384).digest())
    assert len(prehash) == 64  # under bcrypt's 72 bytes, whatever the password's length
    assert bcrypt.checkpw(prehash, bcrypt_hash.encode())


def test_each_hash_has_its_own_salt(hasher: PasswordHasher) -> None:
    assert hasher.hash("same password here") != hasher.hash("same password here")


def test_the_pepper_is_needed(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("a password of mine")
    assert not PasswordHasher(OTHER_PEPPER, rounds=4).verify("a password of mine", encoded).ok


def test_nul_and_unicode_forms(hasher: PasswordHasher) -> None:
    # A NUL would end the password for bcrypt itself; through the HMAC it is just a byte.
    encoded = hasher.hash("before\x00after-part")
    assert hasher.verify("before\x00after-part", encoded).ok
    assert not hasher.verify("before\x00other-part", encoded).ok
    # NFC and NFD spellings of the same text are the same password (NFKC before hashing).
    nfc = unicodedata.normalize("NFC", "crème brûlée à la maison")
    nfd = unicodedata.normalize("NFD", nfc)
    assert nfc != nfd
    assert hasher.verify(nfd, hasher.hash(nfc)).ok


def test_text_that_is_not_unicode_fails_without_raising(hasher: PasswordHasher) -> None:
    encoded = hasher.hash("a normal password")
    assert not hasher.verify("bad \ud800 surrogate", encoded).ok
    assert hasher.verify("bad \ud800 surrogate", hasher.hash("bad \ud800 surrogate")).ok


@settings(max_examples=15, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_verify_accepts_the_password_and_nothing_else(a: str, b: str) -> None:
    hasher = PasswordHasher(PEPPER, rounds=4)
    encoded = hasher.hash(a)
    assert hasher.verify(a, encoded).ok
    same = unicodedata.normalize("NFKC", a) == unicodedata.normalize("NFKC", b)
    assert hasher.verify(b, encoded).ok == same


# --- rehash ---------------------------------------------------------------------------------


def test_hashes_are_upgraded_after_the_cost_rises() -> None:
    old = PasswordHasher(PEPPER, rounds=4).hash("correct horse battery staple")
    current = PasswordHasher(PEPPER, rounds=5)
    assert current.verify("correct horse battery staple", old) == Verified(True, True)
    assert not current.verify("wrong horse battery staple", old).ok
    assert current.verify("wrong horse battery staple", old) == Verified(False, False)
    new = current.hash("correct horse battery staple")  # what the login stores instead
    assert _rounds(new) == 5
    assert current.verify("correct horse battery staple", new) == Verified(True, False)


def test_a_lower_cost_setting_never_downgrades() -> None:
    strong = PasswordHasher(PEPPER, rounds=5).hash("correct horse battery staple")
    assert PasswordHasher(PEPPER, rounds=4).verify("correct horse battery staple", strong) == (
        Verified(True, False)
    )


def test_hashes_under_a_retired_pepper_verify_and_are_upgraded() -> None:
    old = PasswordHasher(OTHER_PEPPER, rounds=4, pepper_id="k1").hash("rotating my pepper")
    current = PasswordHasher(
        PEPPER, rounds=4, pepper_id="k2", previous_peppers={"k1": OTHER_PEPPER}
    )
    assert current.verify("rotating my pepper", old) == Verified(True, True)
    assert current.hash("rotating my pepper").startswith("bcrypt-hmac-sha384$k2$")
    # Once the old pepper is dropped, its hashes no longer verify.
    assert not PasswordHasher(PEPPER, rounds=4, pepper_id="k2").verify("rotating my pepper", old).ok


def test_a_legacy_algorithm_verifies_only_when_registered_and_is_upgraded() -> None:
    imported = "bcrypt$" + bcrypt.hashpw(b"imported password", bcrypt.gensalt(4)).decode()
    plain = PasswordHasher(PEPPER, rounds=4)
    assert plain.verify("imported password", imported) == Verified(False, False)
    with_legacy = PasswordHasher(PEPPER, rounds=4, legacy=[LegacyBcrypt()])
    assert with_legacy.verify("imported password", imported) == Verified(True, True)
    assert not with_legacy.verify("imported passwore", imported).ok
    # The old bcrypt read 72 bytes: a legacy hash keeps that flaw until it is upgraded.
    long = "y" * 72
    imported_long = "bcrypt$" + bcrypt.hashpw(long.encode(), bcrypt.gensalt(4)).decode()
    assert with_legacy.verify(long + "anything", imported_long).ok
    assert not with_legacy.verify("imported password", "bcrypt$not-a-hash").ok


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "plaintext",
        "md5$abc",
        "bcrypt-hmac-sha384$",
        "bcrypt-hmac-sha384$1$",
        "bcrypt-hmac-sha384$1$not-a-bcrypt-hash",
        "bcrypt-hmac-sha384$1$$2b$04$short",
        "bcrypt-hmac-sha384$9$$2b$04$" + "a" * 53,  # unknown pepper id
        "bcrypt-hmac-sha384$1$$2b$04$" + "é" * 53,
    ],
)
def test_damaged_or_unknown_hashes_fail_and_still_do_the_work(
    encoded: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hasher = PasswordHasher(PEPPER, rounds=4)
    calls = _spy_checkpw(monkeypatch)
    assert hasher.verify("any password", encoded) == Verified(False, False)
    assert calls and _rounds_of(calls[-1]) == 4


def test_must_update_on_a_damaged_hash() -> None:
    preferred = BcryptHmacSha384(PEPPER, rounds=4)
    assert preferred.must_update("1$garbage")
    assert preferred.must_update("2$$2b$04$" + "a" * 53)  # another pepper
    assert not preferred.must_update("1$$2b$04$" + "a" * 53)


# --- the same time for unknown and known users ----------------------------------------------


def _spy_checkpw(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> Any:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    return calls


def _rounds_of(hashed: bytes) -> int:
    return int(hashed.split(b"$")[2])


def test_unknown_users_cost_one_bcrypt_at_the_configured_cost(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Timing asserts belong in bench/: here, the work is the same, so the time is.
    hasher = PasswordHasher(PEPPER, rounds=5)
    known = hasher.hash("the right password")
    calls = _spy_checkpw(monkeypatch)
    assert hasher.verify("a wrong password", known) == Verified(False, False)
    assert hasher.dummy_verify("a wrong password") == Verified(False, False)
    assert hasher.dummy_verify() == Verified(False, False)
    assert [_rounds_of(c) for c in calls] == [5, 5, 5]
    assert len({c[:29] for c in calls}) == 3  # a fresh salt each time, not a cached hash


# --- configuration --------------------------------------------------------------------------


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PasswordHasher(b"short", rounds=4)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PasswordHasher(PEPPER, rounds=4, previous_peppers={"old": b"short"})
    with pytest.raises(ValueError, match="at least 32 bytes"):
        PasswordHasher("not bytes" * 8, rounds=4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no '\\$'"):
        PasswordHasher(PEPPER, rounds=4, pepper_id="a$b")
    with pytest.raises(ValueError, match="no '\\$'"):
        PasswordHasher(PEPPER, rounds=4, pepper_id="")
    for rounds in (3, 32):
        with pytest.raises(ValueError, match="between 4 and 31"):
            PasswordHasher(PEPPER, rounds=rounds)


def test_the_pepper_never_prints() -> None:
    pepper = os.urandom(32)
    hasher = PasswordHasher(
        pepper, rounds=4, previous_peppers={"0": b"z" * 32}, legacy=[LegacyBcrypt()]
    )
    text = repr(hasher) + str(hasher)
    assert repr(pepper) not in text and "zzzz" not in text
    assert "rounds=4" in text


# --- policy ---------------------------------------------------------------------------------


def test_the_common_password_list_is_shipped_and_large() -> None:
    common = common_passwords()
    assert len(common) >= 10_000
    assert {"123456", "password", "qwertyuiop", "1qaz2wsx3edc"} <= common
    assert not any(p.startswith("#") or p != p.strip() or not p for p in common)


FULLWIDTH = "".join(chr(ord(c) + 0xFEE0) for c in "QWERTY123456")  # NFKC: QWERTY123456


@pytest.mark.parametrize(
    "password", ["1qaz2wsx3edc", "1QAZ2WSX3EDC", "LeaveMeAlone", "qwerty123456", FULLWIDTH]
)
def test_common_passwords_are_refused_in_any_case(password: str) -> None:
    issues = password_issues(password)
    assert [(i.path, i.message) for i in issues] == [
        ("$.password", "is one of the most common passwords; choose another")
    ]


def test_length_limits() -> None:
    assert [i.message for i in password_issues("a" * (MIN_LENGTH - 1))] == [
        "must be at least 12 characters long"
    ]
    assert password_issues("Zq8!uncommon") == []  # exactly 12
    assert password_issues("v" * MAX_LENGTH) == []
    assert [i.message for i in password_issues("v" * (MAX_LENGTH + 1))] == [
        "must be at most 4096 characters long"
    ]
    assert MIN_LENGTH == 12 and MAX_LENGTH >= 1024


def test_context_words_are_refused() -> None:
    context = ["Alice.Liddell@example.com", "", "Wonderland Ltd"]
    assert [i.message for i in password_issues("alice.liddell@EXAMPLE.com", context=context)] == [
        "must not be your name, e-mail or account name"
    ]
    assert password_issues("wonderland ltd", context=context)
    assert password_issues("wonderland ltd and more", context=context) == []


def test_invalid_unicode_is_refused() -> None:
    assert [i.message for i in password_issues("bad \ud800 surrogate here")] == [
        "must be valid Unicode text"
    ]


def test_check_password_raises_invalid_input_without_echoing_it() -> None:
    check_password("a perfectly fine passphrase")
    for bad in ("short", "qwerty123456", "x" * 5000):
        with pytest.raises(InvalidInput) as caught:
            check_password(bad)
        body = str(caught.value.as_dict())
        assert caught.value.code == "invalid"
        assert "$.password" in body
        assert bad not in body and bad.lower() not in body.lower()
