"""What a new password must be (NIST SP 800-63B 5.1.1.2): long enough, not absurdly long, not
one of the most common passwords, not the user's own name or e-mail. No composition rules
(they make passwords harder to remember, not to guess). Issues never echo the password."""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Iterable
from importlib import resources

from sealflow.core.errors import InvalidInput, Issue

MIN_LENGTH = 12
# Far above any real passphrase; bounds the work of normalising. The hash is the same size
# whatever the length (see passwords.py), so this is not a bcrypt limit.
MAX_LENGTH = 4096
PATH = "$.password"


@functools.cache
def common_passwords() -> frozenset[str]:
    """The shipped list (data/common_passwords.txt), read once on first use."""
    text = resources.files("sealflow.identity").joinpath("data/common_passwords.txt")
    lines = text.read_text(encoding="utf-8").splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def password_issues(password: str, *, context: Iterable[str] = ()) -> list[Issue]:
    """The reasons `password` may not be set, empty when it may. `context`: the user's own
    words (e-mail, name, account name) that must not be the password."""
    try:
        password.encode("utf-8")
    except UnicodeEncodeError:
        return [Issue(PATH, "must be valid Unicode text")]
    length = len(unicodedata.normalize("NFKC", password))
    if length < MIN_LENGTH:
        return [Issue(PATH, f"must be at least {MIN_LENGTH} characters long")]
    if length > MAX_LENGTH:
        return [Issue(PATH, f"must be at most {MAX_LENGTH} characters long")]
    folded = _fold(password)
    if folded in common_passwords():
        return [Issue(PATH, "is one of the most common passwords; choose another")]
    if any(folded == _fold(word) for word in context if word):
        return [Issue(PATH, "must not be your name, e-mail or account name")]
    return []


def check_password(password: str, *, context: Iterable[str] = ()) -> None:
    """Raise InvalidInput (422, naming $.password) when `password` may not be set."""
    issues = password_issues(password, context=context)
    if issues:
        raise InvalidInput(f"password {issues[0].message}", issues)
