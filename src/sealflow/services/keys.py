"""Key operations of a cell (S4): rotate the KEK and rewrap every account keyset, retire old
KEK versions, rotate an account's data key and re-encrypt its records, count records per key.

Every long operation runs online, in batches, and is resumable: run it again after an
interruption and it finishes the work instead of starting over.

Re-encryption (`keys rotate-data`) reads each batch of an account's sealed values that are not
on its primary data key, seals them again under it (the plaintext stays inside the vault), and
writes each row with a compare-and-set on the old ciphertexts: a concurrent writer wins and
the row is looked at again in the next pass. Which data key made a stored value is visible
without decrypting: the first 8 characters of the sealed text are the base64 of the format
byte and Tink's key prefix, so the database itself selects the values still behind.

Deleting old data keys relies on one rule of every writer: a value is sealed inside the write
transaction that stores it (engine.records does so). Then, once every process's keyset cache
has expired after the rotation, taking the write lock waits out every value sealed under an
old key, and the check made under that lock sees them all.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, false, func, or_, select, update

from sealflow.audit.records import OPERATOR, Action
from sealflow.clock import Clock, SystemClock
from sealflow.regions.cells import Cell
from sealflow.services.sealed_columns import SEALED_COLUMNS, SealedTable
from sealflow.vault.errors import DecryptionFailed, KeyVersionError
from sealflow.vault.keystore import RewrapProgress
from sealflow.vault.vault import Vault

_PREFIX_CHARS = 8  # base64 of the 6-byte prefix (format byte + Tink's 5): exactly 8 characters
# Beyond the cache TTL: a process may load the old keyset between the rotation's timestamp
# and its commit in the key store.
SETTLE_MARGIN = timedelta(seconds=1)
_STALLS = 3  # passes in a row that only lost races before giving up (run it again)


# ---------------------------------------------------------------------------------- the KEK
@dataclass(frozen=True)
class KekRotation:
    version: int  # the KEK version every keyset is wrapped under at the end
    resumed: bool  # True: an interrupted rotation was finished, no new version was made
    rewrapped: int


def _record(cell: Cell, clock: Clock | None, action: Action, target: str,
            account_id: str | None = None, **details: object) -> None:
    """Key operations are the operator's (the CLI); each is on the audit trail before it
    touches the key store (a separate database, so the record cannot share its transaction:
    written first, it fails the operation closed)."""
    with cell.write() as conn:
        cell.audit.record(conn, account_id=account_id, actor=OPERATOR, action=action,
                          target=target, at=(clock or SystemClock()).now(), details=details)


def rotate_kek(
    cell: Cell, *, batch_size: int = 100, on_batch: Callable[[int, int], None] | None = None,
    clock: Clock | None = None,
) -> KekRotation:
    """Makes a new KEK version and rewraps every keyset under it, batch by batch, online.
    Resumable: when keysets are still behind the current version (an interrupted run), that
    rotation is finished instead and no new version is made. `on_batch(done, total)`."""
    vault = cell.vault
    status = vault.status()
    behind = sum(n for v, n in status.keysets_by_kek_version.items() if v < status.kek_version)
    resumed = behind > 0
    _record(cell, clock, Action.KEY_ROTATED, f"kek:{cell.region}", key="kek", resumed=resumed,
            from_version=status.kek_version)
    version = status.kek_version if resumed else vault.rotate_kek()
    total = behind if resumed else sum(status.keysets_by_kek_version.values())
    done = stalled = 0
    if on_batch is not None:
        on_batch(done, total)
    while True:
        progress: RewrapProgress = vault.rewrap(batch_size)
        done += progress.rewrapped
        total = max(total, done + progress.remaining)
        if on_batch is not None:
            on_batch(done, total)
        if progress.done:
            break
        stalled = stalled + 1 if progress.rewrapped == 0 else 0  # lost races: try again
        if stalled > _STALLS:
            raise KeyVersionError(
                f"{progress.remaining} keysets of region {cell.region} could not be rewrapped; "
                "run `sealflow keys rotate` again to resume"
            )
    return KekRotation(version=version, resumed=resumed, rewrapped=done)


def retire_kek(cell: Cell, version: int, clock: Clock | None = None) -> dict[str, object]:
    """Retires KEK `version` and every older one: keysets wrapped under them (an old key-store
    copy) no longer unwrap. Refused (KeyVersionError) while a keyset is still wrapped under
    one of them, or for the current version. Returns the provider's description."""
    _record(cell, clock, Action.KEY_RETIRED, f"kek:{cell.region}", key="kek", upto=version)
    cell.vault.retire_kek(version)
    return cell.vault.status().provider


# ---------------------------------------------------------------------------- data keys
@dataclass(frozen=True)
class Reencryption:
    key_id: int  # the primary data key every readable record of the account is on
    reencrypted: int  # rows written
    unreadable: tuple[str, ...]  # "<table>.<column> of <row id>": left as they were


@dataclass
class _Tally:
    on_batch: Callable[[int, int], None] | None
    done: int = 0
    total: int = 0
    lost: int = 0
    unreadable: dict[str, None] = field(default_factory=dict)  # an ordered set

    def report(self) -> None:
        if self.on_batch is not None:
            self.on_batch(self.done, max(self.total, self.done))


def reencrypt_account(
    cell: Cell,
    account_id: str,
    *,
    batch_size: int = 100,
    on_batch: Callable[[int, int], None] | None = None,
    on_wait: Callable[[float], None] | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Reencryption:
    """Seals every value of the account that is not on its primary data key again under it,
    in batches of `batch_size` rows, online (see the module docstring). Idempotent: what is
    already on the primary is not touched. `on_batch(done, total)` after each batch.

    Other processes (the server) keep sealing new values under the older key for up to their
    keyset cache TTL after a rotation; when that time has not passed yet, this waits for it
    (`on_wait(seconds)`) and makes one more pass, so that afterwards no value is left behind.
    Values that do not decrypt (altered, or moved from another row) are left alone and
    reported in `unreadable`."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    clock = clock or SystemClock()
    vault = cell.vault
    tally = _Tally(on_batch)
    while True:
        started = clock.now()
        settled = vault.primary_settled_at(account_id) + SETTLE_MARGIN
        key_id = _until_clean(cell, account_id, batch_size, tally)
        if started >= settled:
            break
        wait = (settled - clock.now()).total_seconds()
        if wait > 0:
            if on_wait is not None:
                on_wait(wait)
            sleep(wait)
    return Reencryption(key_id, tally.done, tuple(tally.unreadable))


def _until_clean(cell: Cell, account_id: str, batch_size: int, tally: _Tally) -> int:
    """Passes over the account's rows until one re-encrypted everything it found readable
    without losing a race, under a primary that did not change meanwhile."""
    vault = cell.vault
    stalled = 0
    while True:
        key_id = vault.primary_data_key_id(account_id)
        prefix = _prefix_text(key_id)
        with cell.read() as conn:
            tally.total = tally.done + _count_behind(conn, account_id, prefix)
        tally.report()
        done, lost = tally.done, tally.lost
        for entry in SEALED_COLUMNS:
            _pass_table(cell, entry, account_id, prefix, batch_size, tally)
        if tally.lost == lost and vault.primary_data_key_id(account_id) == key_id:
            return key_id
        stalled = stalled + 1 if tally.done == done else 0
        if stalled > _STALLS:
            raise KeyVersionError(
                f"records of account {account_id} kept changing while being re-encrypted; "
                "run `sealflow keys rotate-data` again to resume"
            )


def _pass_table(
    cell: Cell, entry: SealedTable, account_id: str, prefix: str, batch_size: int, tally: _Tally
) -> None:
    """One pass over one table, in primary-key order (keyset paging), so every row behind is
    seen once per pass, whatever happens to the rows already seen."""
    table, key = entry.table, entry.key
    wanted = dict.fromkeys((key.name, *entry.reads, *entry.columns))  # the key may be read
    last: Any = None
    while True:
        query = select(*(table.c[name] for name in wanted)).where(
            table.c.account_id == account_id, _behind(entry, prefix)
        )
        if last is not None:
            query = query.where(key > last)
        with cell.read() as conn:
            rows = conn.execute(query.order_by(key).limit(batch_size)).all()
        if not rows:
            return
        last = getattr(rows[-1], key.name)
        _reencrypt_rows(cell, entry, account_id, prefix, rows, tally)
        tally.report()


def _reencrypt_rows(
    cell: Cell, entry: SealedTable, account_id: str, prefix: str, rows: Sequence[Any], tally: _Tally
) -> None:
    """Seals the rows' values again (outside any transaction: the vault may call a KMS), then
    writes them in one short transaction, each row guarded by its old ciphertexts."""
    table, key = entry.table, entry.key
    writes: list[tuple[Any, dict[str, str], dict[str, str]]] = []
    for row in rows:
        row_id = entry.row_id(row)
        old: dict[str, str] = {}
        new: dict[str, str] = {}
        for name in entry.columns:
            text = getattr(row, name)
            if text is None or text.startswith(prefix):
                continue
            try:
                raw = base64.urlsafe_b64decode(text)
                fresh = cell.vault.reencrypt(account_id, table.name, row_id, name, raw)
            except (binascii.Error, ValueError, DecryptionFailed):
                tally.unreadable[f"{table.name}.{name} of {row_id}"] = None
                continue
            old[name] = text
            new[name] = base64.urlsafe_b64encode(fresh).decode("ascii")
        if new:
            writes.append((getattr(row, key.name), old, new))
    if not writes:
        return
    written = 0
    with cell.write() as conn:
        for pk, old, new in writes:
            guard = [table.c[name] == text for name, text in old.items()]
            result = conn.execute(update(table).where(key == pk, *guard).values(**new))
            written += int(result.rowcount)
    tally.done += written
    tally.lost += len(writes) - written


def remove_old_data_keys(cell: Cell, account_id: str, key_id: int,
                         clock: Clock | None = None) -> tuple[int, ...]:
    """Deletes every data key of the account but `key_id` (its primary), once no record of
    the account is on another one. The check holds the cell's write lock while the keys are
    removed, so no value sealed under an old key can be committed in between. Refused
    (KeyVersionError) when a value is still on an older key: removing that key would lose it.
    Returns the ids removed."""
    vault = cell.vault
    with cell.write() as conn:
        _hold_writers(conn)
        if vault.primary_data_key_id(account_id) != key_id:
            raise KeyVersionError(
                f"the data key of account {account_id} was rotated meanwhile; older keys kept "
                "(run `sealflow keys rotate-data` again)"
            )
        behind = _count_behind(conn, account_id, _prefix_text(key_id))
        if behind:
            raise KeyVersionError(
                f"{behind} record(s) of account {account_id} are still sealed under older data "
                "keys, so those keys were kept (run `sealflow keys rotate-data` again; values "
                "that cannot be decrypted must be repaired or deleted first)"
            )
        old = [k for k in vault.data_key_ids(account_id) if k != key_id]
        if not old:
            return ()
        # In the transaction that holds the writers: the record commits with the check.
        cell.audit.record(conn, account_id=account_id, actor=OPERATOR,
                          action=Action.KEY_DESTROYED, target=f"account:{account_id}",
                          at=(clock or SystemClock()).now(),
                          details={"key": "data", "key_ids": old})
        return vault.remove_data_keys(account_id, old)


@dataclass(frozen=True)
class DataRotation:
    key_id: int  # the account's primary data key at the end
    resumed: bool  # True: an unfinished rotation was completed, no new key was made
    reencrypted: int
    removed: tuple[int, ...]  # older data keys deleted from the keyset
    unreadable: tuple[str, ...]


def rotate_account_data(
    cell: Cell,
    account_id: str,
    *,
    drop_old: bool = True,
    batch_size: int = 100,
    on_batch: Callable[[int, int], None] | None = None,
    on_wait: Callable[[float], None] | None = None,
    clock: Clock | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> DataRotation:
    """`keys rotate-data`: a new primary data key for the account, every record re-encrypted
    under it, then (with `drop_old`) the older keys deleted. Resumable: when records are still
    on older keys of the keyset (an interrupted run), that rotation is finished instead and
    no new key is made."""
    vault = cell.vault
    resumed = False
    try:
        key_id = vault.primary_data_key_id(account_id)
        if len(vault.data_key_ids(account_id)) > 1:
            with cell.read() as conn:
                resumed = _count_behind(conn, account_id, _prefix_text(key_id)) > 0
    except DecryptionFailed:  # no data key yet: rotation makes one
        pass
    _record(cell, clock, Action.KEY_ROTATED, f"account:{account_id}", account_id,
            key="data", resumed=resumed)
    if not resumed:
        vault.rotate_data_key(account_id)
    done = reencrypt_account(
        cell, account_id, batch_size=batch_size, on_batch=on_batch, on_wait=on_wait,
        clock=clock, sleep=sleep,
    )
    if drop_old and done.unreadable:  # removal would be refused: say which values, and why
        n = len(done.unreadable)
        shown = ", ".join(done.unreadable[:5]) + (f" and {n - 5} more" if n > 5 else "")
        raise KeyVersionError(
            f"{n} value(s) of account {account_id} do not decrypt (altered or moved): {shown}; "
            "the older data keys were kept (repair or delete those rows, then run `sealflow "
            "keys rotate-data` again)"
        )
    removed = remove_old_data_keys(cell, account_id, done.key_id, clock) if drop_old else ()
    return DataRotation(done.key_id, resumed, done.reencrypted, removed, done.unreadable)


# ---------------------------------------------------------------------------- inside
def _prefix_text(key_id: int) -> str:
    """How every sealed value of data key `key_id` begins (base64url text)."""
    text = base64.urlsafe_b64encode(Vault.ciphertext_prefix(key_id)).decode("ascii")
    assert len(text) == _PREFIX_CHARS
    return text


def _behind(entry: SealedTable, prefix: str) -> ColumnElement[bool]:
    """Rows holding at least one sealed value not made by the key of `prefix`."""
    table = entry.table
    return or_(
        false(),
        *(
            and_(
                table.c[name].is_not(None),
                func.substr(table.c[name], 1, _PREFIX_CHARS) != prefix,
            )
            for name in entry.columns
        ),
    )


def _count_behind(conn: Connection, account_id: str, prefix: str) -> int:
    total = 0
    for entry in SEALED_COLUMNS:
        table = entry.table
        total += int(
            conn.execute(
                select(func.count())
                .select_from(table)
                .where(table.c.account_id == account_id, _behind(entry, prefix))
            ).scalar_one()
        )
    return total


def _hold_writers(conn: Connection) -> None:
    """Makes the transaction wait for, and then hold off, every writer of the sealed tables.
    SQLite: a write transaction (BEGIN IMMEDIATE) already holds the database's one write lock.
    PostgreSQL: SHARE mode waits for open row writes and blocks new ones until commit."""
    if conn.dialect.name == "postgresql":
        names = ", ".join(entry.table.name for entry in SEALED_COLUMNS)  # constants
        conn.exec_driver_sql(f"LOCK TABLE {names} IN SHARE MODE")


def _key_id_of_prefix(text: Any) -> int | None:
    if not isinstance(text, str) or len(text) != _PREFIX_CHARS:
        return None
    try:
        return Vault.data_key_id(base64.urlsafe_b64decode(text))
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------------------- status
def status(cell: Cell, account_id: str | None = None) -> dict[str, Any]:
    """The KEK version, keysets per KEK version, shredded accounts, and sealed values per data
    key id (a value no data key id can be read from counts as "unknown"); with `account_id`,
    that account's values only and its data keys (oldest first, the primary last)."""
    vault_status = cell.vault.status()
    records: Counter[str] = Counter()
    with cell.read() as conn:
        for entry in SEALED_COLUMNS:
            table = entry.table
            for name in entry.columns:
                head = func.substr(table.c[name], 1, _PREFIX_CHARS)
                query = select(head, func.count()).where(table.c[name].is_not(None))
                if account_id is not None:
                    query = query.where(table.c.account_id == account_id)
                for prefix, count in conn.execute(query.group_by(head)):
                    key_id = _key_id_of_prefix(prefix)
                    records["unknown" if key_id is None else str(key_id)] += int(count)
    out: dict[str, Any] = {
        "region": cell.region,
        "provider": vault_status.provider,
        "kek_version": vault_status.kek_version,
        "keysets_by_kek_version": {
            str(v): n for v, n in sorted(vault_status.keysets_by_kek_version.items())
        },
        "shredded_accounts": vault_status.shredded_accounts,
        "records_by_data_key": dict(sorted(records.items())),
    }
    if account_id is not None:
        out["account_id"] = account_id
        try:
            out["data_keys"] = list(cell.vault.data_key_ids(account_id))
        except DecryptionFailed:  # no data key yet
            out["data_keys"] = []
    return out

