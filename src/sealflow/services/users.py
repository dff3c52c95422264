"""Members' identity parts shared by login, sessions, second factor and membership: the
pepper (kept outside the database), the password hasher built on it, the throttle's failure
store, and reading a member.

The pepper is `<data_dir>/keys/pepper.key` (0600, 32 random bytes, created on first use, like
the access-log key). It belongs with the region's key provider; issues 6/7 should move it
there (the KeyProvider has no generic "derive a secret" yet). Never in the database."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from sealflow.config import SessionSettings
from sealflow.core.errors import SealflowError
from sealflow.db.tables import login_failures, users
from sealflow.identity.passwords import PasswordHasher
from sealflow.identity.throttle import Decision, LoginThrottle
from sealflow.secret_files import load_or_create_secret

PEPPER_FILE = "pepper.key"
PEPPER_BYTES = 32


def load_or_create_pepper(path: Path) -> bytes:
    """The pepper, created (0600, in a 0700 directory) on first use."""
    return load_or_create_secret(path, PEPPER_BYTES)


def pepper_file(data_dir: Path) -> Path:
    return data_dir / "keys" / PEPPER_FILE


@dataclass(frozen=True)
class Identity:
    """What the identity services need besides the cells and the clock."""

    hasher: PasswordHasher
    pepper: bytes = field(repr=False)
    idle_timeout: timedelta = timedelta(minutes=30)
    absolute_timeout: timedelta = timedelta(hours=12)

    @classmethod
    def build(cls, data_dir: Path, sessions: SessionSettings, *, rounds: int = 12) -> Identity:
        pepper = load_or_create_pepper(pepper_file(data_dir))
        return cls(
            hasher=PasswordHasher(pepper, rounds=rounds),
            pepper=pepper,
            idle_timeout=timedelta(seconds=sessions.idle_timeout_s),
            absolute_timeout=timedelta(seconds=sessions.absolute_timeout_s),
        )

    def derived(self, purpose: str) -> bytes:
        """A key for one purpose (recovery codes, unknown e-mail keys), from the pepper."""
        return hmac.new(self.pepper, purpose.encode(), hashlib.sha256).digest()


def normalize_email(email: str) -> str:
    return email.strip(" \t\n\r\f\v").lower()


def email_hash(ident: Identity, email: str) -> str:
    """The lookup value of an e-mail address (users.email_hash): not the address."""
    key = ident.derived("e-mail lookup")
    return hmac.new(key, normalize_email(email).encode(), hashlib.sha256).hexdigest()


def find_by_email(conn: Connection, ident: Identity, email: str) -> Any:
    return conn.execute(select(users).where(users.c.email_hash == email_hash(ident, email))
                        ).first()


def get_user(conn: Connection, account_id: str, user_id: str) -> Any:
    return conn.execute(
        select(users).where(users.c.id == user_id, users.c.account_id == account_id)
    ).first()


# --- the throttle's failures ----------------------------------------------------------------
def decide(conn: Connection, policy: LoginThrottle, key: str, now: datetime) -> Decision:
    times = conn.execute(
        select(login_failures.c.at).where(
            login_failures.c.key == key, login_failures.c.at > policy.horizon(now)
        )
    ).scalars()
    return policy.decide(list(times), now)


def record_failures(
    conn: Connection, keys: Iterable[tuple[LoginThrottle, str]], now: datetime
) -> None:
    for policy, key in keys:
        conn.execute(delete(login_failures).where(
            login_failures.c.key == key, login_failures.c.at <= policy.horizon(now)))
        conn.execute(insert(login_failures).values(key=key, at=now))


def clear_failures(conn: Connection, key: str) -> None:
    conn.execute(delete(login_failures).where(login_failures.c.key == key))


class LoginThrottled(SealflowError):
    """Too many failed attempts lately (I6): wait `retry_after_s` (HTTP 429)."""

    code = "login_throttled"
    retryable = True

    def __init__(self, retry_after_s: float) -> None:
        super().__init__("too many failed attempts; try again later")
        self.retry_after_s = retry_after_s
