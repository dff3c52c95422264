"""Token formats and card numbers in step outputs are masked (S5, D7); ordinary numbers and
words that merely look alike are not; an account can turn a detector off."""

from __future__ import annotations

import json
import random
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sealflow.redaction import STATIC, RedactionPolicy, Redactor
from sealflow.redaction.cards import is_card_number, luhn_valid

SETTINGS = settings(deadline=None, max_examples=200)
rnd = random.Random(4)


def _chars(alphabet: str, n: int) -> str:
    return "".join(rnd.choices(alphabet, k=n))


ALNUM = string.ascii_letters + string.digits
TOKENS = {
    "aws": [
        "AKIA" + _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        "ASIA" + _chars("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
    ],
    "github": [
        "ghp_" + _chars(ALNUM, 36),
        "gho_" + _chars(ALNUM, 36),
        "github_pat_" + _chars(ALNUM + "_", 82),
    ],
    "slack": [
        "xoxb-1234567890-1234567890123-" + _chars(ALNUM, 24),
        "xapp-1-A01234567-1234567890-" + _chars("0123456789abcdef", 64),
        "hooks.slack.com/services/T01234567/B01234567/" + _chars(ALNUM, 24),
    ],
    "stripe": [
        "sk_live_" + _chars(ALNUM, 24),
        "rk_test_" + _chars(ALNUM, 24),
        "whsec_" + _chars(ALNUM, 32),
    ],
    "jwt": [
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
        "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
    ],  # unsigned: empty signature
}
CARDS = [
    "4111111111111111",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",  # Visa
    "5555555555554444",
    "2221000000000009",  # Mastercard, 2-series
    "378282246310005",
    "3782 822463 10005",  # Amex, 4-6-5
    "6011111111111117",
    "3056930009020004",  # Discover, Diners
    "4222222222222",  # Visa, 13 digits
]
PEM = (
    "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt\n"
    "0gBEwRMRU0yCCJgSTbDXDnHzaAhlIIIB/xRH1Kk2Aepq\n-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(("name", "token"), [(n, t) for n, ts in TOKENS.items() for t in ts])
def test_token_formats_in_step_outputs(name: str, token: str) -> None:
    output = {"body": f"here: {token}, done", "raw": token, "list": [f"'{token}'"]}
    assert STATIC.value(output) == {
        "body": f"here: [REDACTED:{name}], done",
        "raw": f"[REDACTED:{name}]",
        "list": [f"'[REDACTED:{name}]'"],
    }


def test_slack_webhook_url_keeps_its_scheme() -> None:
    url = "https://" + TOKENS["slack"][2]
    assert STATIC.text(url) == "https://[REDACTED:slack]"


def test_pem_private_keys_raw_escaped_and_cut_off() -> None:
    assert STATIC.text(f"key:\n{PEM}\nnext") == "key:\n[REDACTED:pem]\nnext"
    escaped = json.dumps({"private_key": PEM, "n": 1})
    assert json.loads(STATIC.text(escaped)) == {"private_key": "[REDACTED:pem]", "n": 1}
    cut = PEM[:120]
    assert STATIC.text(cut + '" and more') == '[REDACTED:pem]" and more'
    public = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n"
    assert STATIC.text(public) == public


@pytest.mark.parametrize("card", CARDS)
def test_card_numbers_in_step_outputs(card: str) -> None:
    assert is_card_number(card.replace(" ", "").replace("-", ""))
    digits = card.replace(" ", "").replace("-", "")
    output = {"payment": {"card": card, "note": f"paid with {card}."}, "n": int(digits[:12])}
    assert STATIC.value(output) == {
        "payment": {"card": "[REDACTED:card]", "note": "paid with [REDACTED:card]."},
        "n": int(digits[:12]),
    }


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("qty 2 4111111111111111", "qty 2 [REDACTED:card]"),
        ("4111 1111 1111 1111 1111", "[REDACTED:card] 1111"),
        ("ref 12 3782 822463 10005.", "ref 12 [REDACTED:card]."),
    ],
)
def test_a_card_among_other_groups_of_digits(text: str, masked: str) -> None:
    assert STATIC.text(text) == masked


def test_card_number_as_json_integer_and_in_large_texts() -> None:
    assert STATIC.value({"pan": 4111111111111111, "id": 1234567890123456}) == {
        "pan": "[REDACTED:card]",
        "id": 1234567890123456,
    }
    filler = "uuid 12345678-1234-4321-8765-123456789012 at 2025-01-02 ts 1717171717171; " * 300
    text = filler + "card 4111 1111 1111 1111 end" + filler
    assert STATIC.text(text) == filler + "card [REDACTED:card] end" + filler
    spaced = ("x é " * 100) + "4111-1111-1111-1111 y"  # multi-byte text before it
    assert STATIC.text(spaced) == ("x é " * 100) + "[REDACTED:card] y"


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # Luhn fails
        "1234567890123452",  # Luhn-valid, no card issuer starts with 1
        "41111111111111110",  # part of a longer run (17 digits, Luhn fails)
        "04111111111111111",  # the card's digits inside a longer run
        "411111111111",  # 12 digits
        "4111 1111 1111 1112 1111",  # 20 digits in groups, no range of them a card
        "4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1",  # groups of one digit are not how cards are written
        "2025-01-02 12:00:00, order 4111-11",
    ],
)
def test_ordinary_numbers_survive(text: str) -> None:
    assert STATIC.text(text) == text


def _luhn_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_valid(body + d):
            return d
    raise AssertionError


@SETTINGS
@given(st.text("0123456789", min_size=12, max_size=18), st.sampled_from(" -|"))
def test_random_numbers_that_fail_luhn_survive(body: str, sep: str) -> None:
    bad = body + str((int(_luhn_digit(body)) + 1) % 10)
    assert not luhn_valid(bad)
    for text in (bad, f"id {bad}{sep}x", sep.join([bad[:4], bad[4:8], bad[8:]])):
        assert STATIC.text(text) == text


@SETTINGS
@given(st.integers(0, 10**12 - 1), st.text(string.ascii_letters + " .,:", max_size=30))
def test_short_numbers_and_plain_text_survive(n: int, words: str) -> None:
    text = f"{words} {n} {words}"
    assert STATIC.text(text) == text
    assert STATIC.value({"n": n, "s": words}) == {"n": n, "s": words}


@SETTINGS
@given(st.text("0123456789", min_size=12, max_size=18))
def test_luhn_valid_numbers_with_an_issuer_prefix_are_masked(body: str) -> None:
    body = "4" + body[1:]
    card = body + _luhn_digit(body)
    assert STATIC.text(f"pay {card} now") == "pay [REDACTED:card] now"


@pytest.mark.parametrize(
    "text",
    [
        "xAKIAIOSFODNN7EXAMPLE",  # glued to a word
        "AKIAIOSFODNN7EXAMPLE1",  # one character too long
        "ghp_short",
        "sk_live_short",
        "eyJhbGciOi.notjwt",
        "ask_live_" + "a" * 20,
        "the token eyJ is not a jwt",
    ],
)
def test_lookalikes_survive(text: str) -> None:
    assert STATIC.text(text) == text


def test_known_value_names_a_token_it_holds() -> None:
    token = TOKENS["jwt"][0]
    r = Redactor()
    r.add_secret("google id token", token)
    assert r.text(f"id={token}") == "id=[REDACTED:google id token]"


def test_detectors_can_be_turned_off_per_account() -> None:
    policy = RedactionPolicy.from_settings({"disabled_detectors": ["card", "jwt"]})
    r = Redactor(policy)
    jwt, aws = TOKENS["jwt"][0], TOKENS["aws"][0]
    assert r.text(f"{CARDS[1]} {jwt} {aws}") == f"{CARDS[1]} {jwt} [REDACTED:aws]"
    assert r.value({"n": 4111111111111111}) == {"n": 4111111111111111}
    assert RedactionPolicy(detectors=frozenset()).detectors == frozenset()
    with pytest.raises(ValueError, match="unknown detectors"):
        RedactionPolicy(detectors=frozenset({"nope"}))


def test_large_text_runs_every_detector_once() -> None:
    filler = "plain words and numbers 2025 42 " * 200
    parts = [t for ts in TOKENS.values() for t in ts]
    text = filler + " | ".join(parts) + filler + PEM + filler
    out = STATIC.text(text)
    assert all(p not in out for p in parts) and "MIIEow" not in out
    assert out.startswith(filler) and out.endswith(filler)
