"""Data storage (D1, D2): keys and values an execution keeps in one of three scopes:
`execution` (this run only), `workflow` (every run of the workflow) and `account`.

Schema (db.tables storage_*):
- A key name may be customer data, so it is sealed (S6) and found by `key_hash`:
  HMAC-SHA256 of (scope, scope id, key) under a per-account lookup secret, itself sealed under
  the account's data key (storage_lookup_keys). A copy of the database shows neither the
  names nor which scopes share one, and shredding the account (S7) makes the hashes
  unconfirmable too.
- A value lives in its entry row (kind "value"); a list (or collection: a list used as a
  queue) has one storage_items row per element with a growing `seq`, so append and shift
  touch one row instead of rewriting a blob.

Atomicity comes from the database, never a Python lock: every change runs in one write
transaction that first locks the entry's row (SQLite: BEGIN IMMEDIATE holds the database's
write lock; PostgreSQL: SELECT ... FOR UPDATE). A missing entry is created with INSERT ... ON
CONFLICT DO NOTHING and then locked, so two first writers of one key meet on the same row.
Atomic increment is a compare-and-set on the entry's `revision` (a sealed value cannot be
added to in SQL), retried in the same transaction if it loses.

Lifetimes (D2): `delete_scope` is called by the runner in the transaction that ends an
execution (execution scope), by workflow deletion (workflow scope); account deletion removes
every row of the account (services.account_deletion). `sweep_ended_executions` is the
periodic backstop for execution-scope keys an execution left behind.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from sealflow.clock import Clock
from sealflow.core.errors import Conflict, InvalidInput, LimitExceeded, SealflowError
from sealflow.core.limits import Limits
from sealflow.db import codec
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import storage_entries, storage_items, storage_lookup_keys
from sealflow.regions.cells import Cell

Scope = Literal["execution", "workflow", "account"]
SCOPES: tuple[Scope, ...] = ("execution", "workflow", "account")
MAX_PAGE = 1000
_CAS_TRIES = 10
_AWAIT_FIRST_S, _AWAIT_MAX_S = 0.05, 1.0  # polling interval of await_value, growing


class WrongKind(SealflowError):
    """The operation does not fit what the key holds (append to a number, increment a list)."""

    code = "wrong_type"


class AwaitTimeout(SealflowError):
    """await_value: no value appeared before the timeout."""

    code = "await_timeout"


@dataclass(frozen=True)
class Found:
    found: bool
    value: Any = None


class ScopedStorage:
    """What one step of one execution may use: the storage of its account, its workflow and
    its execution (built by the engine for each step, engine.walker)."""

    def __init__(
        self,
        cell: Cell,
        clock: Clock,
        limits: Limits,
        *,
        account_id: str,
        workflow_id: str,
        execution_id: str,
    ) -> None:
        self.cell = cell
        self.clock = clock
        self.limits = limits
        self.account_id = account_id
        self._scope_ids: dict[str, str] = {
            "execution": execution_id,
            "workflow": workflow_id,
            "account": account_id,
        }

    # ------------------------------------------------------------------ operations
    def set(self, scope: str, key: str, value: Any) -> None:
        self._value_size(value)
        with self._entry(scope, key, create=True) as (conn, entry):
            _drop_items(conn, entry.id)
            self._write_value(conn, entry, value, next_seq=0)

    def get(self, scope: str, key: str) -> Found:
        where = self._where(scope, key)
        with self.cell.read() as conn:
            secret = self._secret(conn, create=False)
            if secret is None:
                return Found(False)
            key_hash = _hash(secret, scope, self._scope_id(scope), key)
            entry = conn.execute(
                select(storage_entries).where(*where, storage_entries.c.key_hash == key_hash)
            ).first()
            return self._read(conn, entry)

    def delete(self, scope: str, key: str) -> bool:
        with self._entry(scope, key, create=False) as (conn, entry):
            if entry is None:
                return False
            _drop_items(conn, entry.id)
            conn.execute(delete(storage_entries).where(storage_entries.c.id == entry.id))
            return entry.kind == "list" or entry.value is not None

    def append(self, scope: str, key: str, value: Any) -> int:
        """Adds `value` at the end of the list at `key` (made when missing); its new length."""
        self._value_size(value)
        with self._entry(scope, key, create=True) as (conn, entry):
            entry = self._as_list(conn, entry, key)
            seq = entry.next_seq
            self._insert_item(conn, entry.id, seq, value)
            self._touch(conn, entry.id, next_seq=seq + 1)
            return _length(conn, entry.id)

    def delete_from_list(
        self, scope: str, key: str, *, index: int | None = None, value: Any = None,
        by_value: bool = False,
    ) -> tuple[int, int]:
        """Removes the element at `index` (negative: from the end), or with `by_value` every
        element equal to `value`. Returns (removed, length left)."""
        with self._entry(scope, key, create=False) as (conn, entry):
            if entry is None:
                return 0, 0
            entry = self._as_list(conn, entry, key)
            rows = conn.execute(
                select(storage_items.c.id, storage_items.c.value)
                .where(storage_items.c.entry_id == entry.id)
                .order_by(storage_items.c.seq)
            ).all()
            if by_value:
                doomed = [r.id for r in rows if self._open_item(r) == value]
            elif index is not None and -len(rows) <= index < len(rows):
                doomed = [rows[index].id]
            else:
                doomed = []
            if doomed:
                conn.execute(delete(storage_items).where(storage_items.c.id.in_(doomed)))
                self._touch(conn, entry.id)
            return len(doomed), len(rows) - len(doomed)

    def increment(self, scope: str, key: str, by: int | float = 1) -> int | float:
        """Adds `by` to the number at `key` (0 when missing) and returns the new number."""
        with self._entry(scope, key, create=True) as (conn, entry):
            for _ in range(_CAS_TRIES):
                if entry.kind != "value":
                    raise WrongKind(f"storage key {key!r} holds a list, not a number")
                current = 0 if entry.value is None else self._open_value(entry)
                if isinstance(current, bool) or not isinstance(current, int | float):
                    raise WrongKind(
                        f"storage key {key!r} holds {type(current).__name__}, not a number"
                    )
                new = current + by
                written = conn.execute(
                    update(storage_entries)
                    .where(
                        storage_entries.c.id == entry.id,
                        storage_entries.c.revision == entry.revision,
                    )
                    .values(
                        value=self._seal("storage_entries", entry.id, "value", new),
                        revision=entry.revision + 1,
                        updated_at=self.clock.now(),
                    )
                ).rowcount
                if written == 1:
                    return new
                entry = self._lock(conn, entry.id)  # lost a race: read it again
            raise Conflict(f"storage key {key!r} changed too often to increment; try again",
                           retryable=True)

    def keys(self, scope: str, *, cursor: str | None = None, limit: int = 100) -> tuple[
        list[str], str | None
    ]:
        """One page of the scope's keys (in no particular order) and the cursor of the next
        page (None at the end)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be 1..{MAX_PAGE}")
        scope_id = self._scope_id(scope)
        query = select(storage_entries.c.id, storage_entries.c.key_name).where(
            storage_entries.c.account_id == self.account_id,
            storage_entries.c.scope == scope,
            storage_entries.c.scope_id == scope_id,
        )
        if cursor:
            query = query.where(storage_entries.c.id > _decode_cursor(cursor))
        with self.cell.read() as conn:
            rows = conn.execute(query.order_by(storage_entries.c.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        names = [self._open("storage_entries", r.id, "key_name", r.key_name) for r in rows]
        return names, (_encode_cursor(rows[-1].id) if more else None)

    def shift(self, scope: str, key: str) -> Found:
        """Removes and returns the first element of the list (collection) at `key`."""
        with self._entry(scope, key, create=False) as (conn, entry):
            if entry is None:
                return Found(False)
            entry = self._as_list(conn, entry, key)
            first = conn.execute(
                select(storage_items.c.id, storage_items.c.value)
                .where(storage_items.c.entry_id == entry.id)
                .order_by(storage_items.c.seq)
                .limit(1)
            ).first()
            if first is None:
                return Found(False)
            conn.execute(delete(storage_items).where(storage_items.c.id == first.id))
            self._touch(conn, entry.id)
            return Found(True, self._open_item(first))

    async def await_value(self, scope: str, key: str, timeout_s: float) -> Any:
        """The value at `key` once it has one (set by another execution, say), polling on the
        engine's clock; AwaitTimeout after `timeout_s`."""
        deadline = self.clock.monotonic() + timeout_s
        interval = _AWAIT_FIRST_S
        while True:
            got = self.get(scope, key)
            if got.found:
                return got.value
            left = deadline - self.clock.monotonic()
            if left <= 0:
                raise AwaitTimeout(
                    f"storage key {key!r} ({scope} scope) had no value after {timeout_s:g} s"
                )
            await self.clock.sleep(min(interval, left))
            interval = min(_AWAIT_MAX_S, interval * 1.5)

    # ------------------------------------------------------------------ inside
    def _seal(self, table: str, row_id: str, column: str, value: Any) -> str:
        return seal(self.cell.vault, self.account_id, table, row_id, column, value)

    def _open(self, table: str, row_id: str, column: str, text: str | None) -> Any:
        return open_(self.cell.vault, self.account_id, table, row_id, column, text)

    def _scope_id(self, scope: str) -> str:
        try:
            return self._scope_ids[scope]
        except KeyError:
            raise InvalidInput(f"unknown storage scope {scope!r} (one of {', '.join(SCOPES)})"
                               ) from None

    def _where(self, scope: str, key: str) -> tuple[Any, ...]:
        if not isinstance(key, str) or not key:
            raise InvalidInput("a storage key must be a non-empty string")
        self.limits.check("storage_key_length", len(key), "storage key length in characters")
        return (
            storage_entries.c.account_id == self.account_id,
            storage_entries.c.scope == scope,
            storage_entries.c.scope_id == self._scope_id(scope),
        )

    def _value_size(self, value: Any) -> int:
        size = len(codec.dumps_bytes(value))
        if size > self.limits.storage_value_bytes:
            raise LimitExceeded(
                "storage_value_bytes", self.limits.storage_value_bytes,
                f"a stored value is {size} bytes as JSON, more than allowed",
            )
        return size

    def _secret(self, conn: Connection, *, create: bool) -> bytes | None:
        row = conn.execute(
            select(storage_lookup_keys.c.secret).where(
                storage_lookup_keys.c.account_id == self.account_id
            )
        ).first()
        if row is None:
            if not create:
                return None
            fresh = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
            sealed = self._seal("storage_lookup_keys", self.account_id, "secret", fresh)
            conn.execute(_insert_ignore(conn, storage_lookup_keys, ["account_id"]).values(
                account_id=self.account_id, secret=sealed, created_at=self.clock.now()))
            return self._secret(conn, create=False)
        text = self._open("storage_lookup_keys", self.account_id, "secret", row.secret)
        return base64.b64decode(text)

    @contextmanager
    def _entry(self, scope: str, key: str, *, create: bool) -> Iterator[tuple[Connection, Any]]:
        """A write transaction holding the entry's row lock (None when missing and not
        `create`)."""
        where = self._where(scope, key)
        with self.cell.write() as conn:
            secret = self._secret(conn, create=create)
            if secret is None:
                yield conn, None
                return
            key_hash = _hash(secret, scope, self._scope_id(scope), key)
            query = select(storage_entries).where(*where, storage_entries.c.key_hash == key_hash)
            entry = conn.execute(query.with_for_update()).first()
            if entry is None and create:
                entry_id = str(uuid.uuid4())
                now = self.clock.now()
                conn.execute(
                    _insert_ignore(
                        conn, storage_entries, ["account_id", "scope", "scope_id", "key_hash"]
                    ).values(
                        id=entry_id, account_id=self.account_id, scope=scope,
                        scope_id=self._scope_id(scope), key_hash=key_hash,
                        key_name=self._seal("storage_entries", entry_id, "key_name", key),
                        kind="value", value=None, revision=1, next_seq=0,
                        created_at=now, updated_at=now,
                    )
                )
                entry = conn.execute(query.with_for_update()).first()
            yield conn, entry

    def _lock(self, conn: Connection, entry_id: str) -> Any:
        return conn.execute(
            select(storage_entries).where(storage_entries.c.id == entry_id).with_for_update()
        ).one()

    def _read(self, conn: Connection, entry: Any) -> Found:
        if entry is None:
            return Found(False)
        if entry.kind == "list":
            rows = conn.execute(
                select(storage_items.c.id, storage_items.c.value)
                .where(storage_items.c.entry_id == entry.id)
                .order_by(storage_items.c.seq)
            ).all()
            return Found(True, [self._open_item(r) for r in rows])
        if entry.value is None:  # made by a first writer that has not committed a value
            return Found(False)
        return Found(True, self._open_value(entry))

    def _open_value(self, entry: Any) -> Any:
        return self._open("storage_entries", entry.id, "value", entry.value)

    def _open_item(self, row: Any) -> Any:
        return self._open("storage_items", row.id, "value", row.value)

    def _write_value(self, conn: Connection, entry: Any, value: Any, *, next_seq: int) -> None:
        conn.execute(
            update(storage_entries)
            .where(storage_entries.c.id == entry.id)
            .values(
                kind="value",
                value=self._seal("storage_entries", entry.id, "value", value),
                revision=storage_entries.c.revision + 1,
                next_seq=next_seq,
                updated_at=self.clock.now(),
            )
        )

    def _as_list(self, conn: Connection, entry: Any, key: str) -> Any:
        """The entry as a list: a fresh entry becomes an empty one, a stored JSON array is
        moved into element rows; anything else is WrongKind."""
        if entry.kind == "list":
            return entry
        current = [] if entry.value is None else self._open_value(entry)
        if not isinstance(current, list):
            raise WrongKind(f"storage key {key!r} holds {type(current).__name__}, not a list")
        for seq, element in enumerate(current):
            self._insert_item(conn, entry.id, seq, element)
        conn.execute(
            update(storage_entries)
            .where(storage_entries.c.id == entry.id)
            .values(kind="list", value=None, next_seq=len(current),
                    revision=storage_entries.c.revision + 1, updated_at=self.clock.now())
        )
        return self._lock(conn, entry.id)

    def _insert_item(self, conn: Connection, entry_id: str, seq: int, value: Any) -> None:
        item_id = str(uuid.uuid4())
        conn.execute(insert(storage_items).values(
            id=item_id, entry_id=entry_id, account_id=self.account_id, seq=seq,
            value=self._seal("storage_items", item_id, "value", value),
        ))

    def _touch(self, conn: Connection, entry_id: str, *, next_seq: int | None = None) -> None:
        values: dict[str, Any] = {
            "revision": storage_entries.c.revision + 1, "updated_at": self.clock.now()
        }
        if next_seq is not None:
            values["next_seq"] = next_seq
        conn.execute(update(storage_entries).where(storage_entries.c.id == entry_id)
                     .values(**values))


# Lifetimes (D2: delete_scope, sweep_ended_executions): services/storage_lifetimes.py.


# ---------------------------------------------------------------------- helpers
def _hash(secret: bytes, scope: str, scope_id: str, key: str) -> str:
    message = codec.dumps_bytes([scope, scope_id, key])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _insert_ignore(conn: Connection, table: Any, keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT DO NOTHING: a concurrent first writer is not an error."""
    if conn.dialect.name == "postgresql":
        return pg_insert(table).on_conflict_do_nothing(index_elements=keys)
    return sqlite_insert(table).on_conflict_do_nothing(index_elements=keys)


def _drop_items(conn: Connection, entry_id: str) -> None:
    conn.execute(delete(storage_items).where(storage_items.c.entry_id == entry_id))


def _length(conn: Connection, entry_id: str) -> int:
    return int(conn.execute(
        select(func.count()).select_from(storage_items)
        .where(storage_items.c.entry_id == entry_id)
    ).scalar_one())


def _encode_cursor(entry_id: str) -> str:
    return base64.urlsafe_b64encode(entry_id.encode()).decode("ascii").rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        return str(uuid.UUID(text))  # entry ids are uuid4 text
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("cursor is not one returned by get_all_keys") from None
