"""The audit log store: append (fail closed), checkpoints, reads and proofs.

Fail closed (A2): `append` runs INSIDE the caller's transaction, on the caller's connection.
If the record cannot be written the insert raises, the transaction rolls back, and the action
it records never happened. There is no buffering and no "log later".

Appenders are serialised so that each reads the true head: on SQLite every writing
transaction already holds the database's write lock (BEGIN IMMEDIATE, db.engine); on
PostgreSQL `append` takes a transaction-scoped advisory lock first (released at COMMIT or
ROLLBACK), then reads the head. Two appenders thus cannot both chain onto one record (and the
primary key on `seq` would refuse the second anyway).

The chain: hash(n) = SHA-256(hash(n-1) || leaf(n)), hash(0) = 32 zero bytes, leaf(n) the RFC
9162 leaf hash of record n's canonical bytes. The Merkle tree is over the same leaves, so a
checkpoint's signed root commits to every record up to its size."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, text
from sqlalchemy.exc import DatabaseError

from sealflow.audit import merkle
from sealflow.audit.canonical import canonical
from sealflow.audit.records import AuditEvent, format_time
from sealflow.audit.signing import Signer
from sealflow.db.tables import audit_checkpoints, audit_records

GENESIS = "00" * 32
PG_LOCK_KEY = 0x5EA1F10A0D17  # pg_advisory_xact_lock key of the audit head


# Built once and reused: SQLAlchemy then reuses their compiled form and cache key (most of
# an append's cost otherwise). Statement objects only; nothing connects at import time.
_HEAD = (select(audit_records.c.seq, audit_records.c.hash)
         .order_by(audit_records.c.seq.desc()).limit(1))
_INSERT = insert(audit_records)
_HEAD_SQL = "SELECT seq, hash FROM audit_records ORDER BY seq DESC LIMIT 1"
_INSERT_SQL = ("INSERT INTO audit_records (seq, account, at, record, prev_hash, hash) "
               "VALUES (?, ?, ?, ?, ?, ?)")


def chain_hash(prev_hex: str, leaf: bytes) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hex) + leaf).hexdigest()


def _lock_head(conn: Connection) -> None:
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})


def head(conn: Connection) -> tuple[int, str]:
    """(size, chain hash of the last record): (0, GENESIS) for an empty log."""
    row = conn.execute(_HEAD).first()
    return (0, GENESIS) if row is None else (int(row.seq), str(row.hash))


def append(conn: Connection, event: AuditEvent) -> int:
    """Write `event` as the next record, in the caller's transaction; returns its seq."""
    if conn.dialect.name == "sqlite":
        return _append_sqlite(conn, event)
    _lock_head(conn)
    size, prev = head(conn)
    seq = size + 1
    record = canonical(event.body(seq))
    conn.execute(_INSERT, {
        "seq": seq, "account": event.account_id, "at": event.at, "record": record.decode(),
        "prev_hash": prev, "hash": chain_hash(prev, merkle.leaf_hash(record)),
    })
    return seq


def _append_sqlite(conn: Connection, event: AuditEvent) -> int:
    """The same two statements straight on the driver connection (the one the transaction
    runs on, as db.engine does for BEGIN): SQLAlchemy's per-statement machinery was over half
    of an append. `at` is written as tables.DateTime writes it on SQLite (naive UTC)."""
    raw = conn.connection.driver_connection
    if raw is None or not conn.in_transaction():
        raise RuntimeError("audit append needs the caller's open transaction")
    try:
        row = raw.execute(_HEAD_SQL).fetchone()
        seq, prev = (1, GENESIS) if row is None else (row[0] + 1, row[1])
        record = canonical(event.body(seq))
        at = event.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        params = (seq, event.account_id, at, record.decode(), prev,
                  chain_hash(prev, merkle.leaf_hash(record)))
        raw.execute(_INSERT_SQL, params)
    except sqlite3.Error as err:  # surface it as SQLAlchemy would (callers catch those)
        raise DatabaseError(_INSERT_SQL, None, err) from err
    return int(seq)


# --- checkpoints -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Checkpoint:
    id: int
    tree_size: int
    root: str
    at: datetime
    body: str
    signature: str
    key_id: str

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "tree_size": self.tree_size, "root": self.root,
                "body": self.body, "signature": self.signature, "key_id": self.key_id}


@dataclass(frozen=True)
class CheckpointPolicy:
    """Sign a tree head every `every_records` records or `every` time, whichever first."""

    every_records: int = 1000
    every: timedelta = timedelta(seconds=60)

    def due(self, last_size: int, last_at: datetime | None, size: int, now: datetime) -> bool:
        if size <= last_size:
            return False
        if size - last_size >= self.every_records:
            return True
        return last_at is not None and now - last_at >= self.every


def statement(region: str, tree_size: int, root: str, at: datetime, key_id: str) -> bytes:
    """The canonical bytes a checkpoint signs."""
    return canonical({"type": "sealflow-audit-checkpoint", "v": 1, "region": region,
                      "tree_size": tree_size, "root": root, "at": format_time(at),
                      "key_id": key_id})


def _to_checkpoint(row: Any) -> Checkpoint:
    return Checkpoint(int(row.id), int(row.tree_size), str(row.root_hash), row.at,
                      str(row.body), str(row.signature), str(row.key_id))


def checkpoints(conn: Connection) -> list[Checkpoint]:
    rows = conn.execute(select(audit_checkpoints).order_by(audit_checkpoints.c.id)).all()
    return [_to_checkpoint(r) for r in rows]


def last_checkpoint(conn: Connection) -> Checkpoint | None:
    row = conn.execute(
        select(audit_checkpoints).order_by(audit_checkpoints.c.id.desc()).limit(1)
    ).first()
    return None if row is None else _to_checkpoint(row)


def checkpoint(conn: Connection, region: str, signer: Signer, now: datetime) -> Checkpoint | None:
    """Sign the current tree head (None when nothing was appended since the last checkpoint).
    Extends the last checkpoint's Merkle frontier with the new records' leaves only."""
    _lock_head(conn)
    size, _ = head(conn)
    row = conn.execute(
        select(audit_checkpoints.c.tree_size, audit_checkpoints.c.frontier)
        .order_by(audit_checkpoints.c.id.desc()).limit(1)
    ).first()
    frontier = (merkle.Frontier() if row is None
                else merkle.Frontier.from_json(int(row.tree_size), json.loads(row.frontier)))
    if size <= frontier.size:
        return None
    for seq, record in conn.execute(
        select(audit_records.c.seq, audit_records.c.record)
        .where(audit_records.c.seq > frontier.size, audit_records.c.seq <= size)
        .order_by(audit_records.c.seq)
    ):
        if seq != frontier.size + 1:
            raise RuntimeError(f"audit record {frontier.size + 1} is missing; run audit verify")
        frontier.append(merkle.leaf_hash(record.encode()))
    root = frontier.root().hex()
    body = statement(region, size, root, now, signer.key_id)
    signature = signer.sign(body)
    result = conn.execute(insert(audit_checkpoints).values(
        tree_size=size, root_hash=root, at=now, body=body.decode(),
        signature=signature, key_id=signer.key_id,
        frontier=json.dumps(frontier.to_json()),
    ))
    (cp_id,) = result.inserted_primary_key or (0,)
    return Checkpoint(int(cp_id), size, root, now, body.decode(), signature, signer.key_id)


class Checkpointer:
    """Decides, cheaply after each append, whether a checkpoint is due, and signs it. Holds
    the last checkpoint's (size, time) in memory; `checkpoint` re-reads the truth under the
    lock, so a stale cache (another process checkpointed) costs nothing but a no-op."""

    def __init__(self, region: str, signer: Signer,
                 policy: CheckpointPolicy | None = None) -> None:
        self.region = region
        self.signer = signer
        self.policy = policy or CheckpointPolicy()
        self._last: tuple[int, datetime | None] | None = None

    def after_append(self, conn: Connection, seq: int, now: datetime) -> Checkpoint | None:
        if self._last is None:
            cp = last_checkpoint(conn)
            self._last = (0, None) if cp is None else (cp.tree_size, cp.at)
        last_size, last_at = self._last
        if last_at is None:
            last_at = now  # first checkpoint: time runs from the first append seen
            self._last = (last_size, now)
        if not self.policy.due(last_size, last_at, seq, now):
            return None
        cp = checkpoint(conn, self.region, self.signer, now)
        if cp is not None:
            self._last = (cp.tree_size, cp.at)
        return cp


# --- reads and proofs ------------------------------------------------------------------------

def iter_records(conn: Connection, *, after: int = 0, upto: int | None = None,
                 batch: int = 5000) -> Iterator[Any]:
    """Rows in seq order, fetched in keyset pages (constant memory for any log size)."""
    last = after
    while True:
        query = (select(audit_records).where(audit_records.c.seq > last)
                 .order_by(audit_records.c.seq).limit(batch))
        if upto is not None:
            query = query.where(audit_records.c.seq <= upto)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < batch:
            return
        last = int(rows[-1].seq)


def leaf_hashes(conn: Connection, upto: int) -> list[bytes]:
    leaves: list[bytes] = []
    for row in iter_records(conn, upto=upto):
        if row.seq != len(leaves) + 1:
            raise ValueError(f"audit record {len(leaves) + 1} is missing; run audit verify")
        leaves.append(merkle.leaf_hash(row.record.encode()))
    if len(leaves) != upto:
        raise ValueError(f"the log holds {len(leaves)} records, not {upto}")
    return leaves


def _default_size(conn: Connection) -> int:
    cp = last_checkpoint(conn)
    return cp.tree_size if cp is not None else head(conn)[0]


def inclusion(conn: Connection, seq: int, tree_size: int | None = None) -> dict[str, Any]:
    """Proof that record `seq` is in the tree of `tree_size` records (default: the last
    signed checkpoint's size, so the root can be checked against a signature)."""
    size = _default_size(conn) if tree_size is None else tree_size
    if not 1 <= seq <= size:
        raise ValueError(f"record {seq} is not within a tree of {size} records")
    leaves = leaf_hashes(conn, size)
    return {"seq": seq, "tree_size": size, "leaf_hash": leaves[seq - 1].hex(),
            "root": merkle.root(leaves).hex(),
            "path": [h.hex() for h in merkle.inclusion_proof(seq - 1, leaves)]}


def consistency(conn: Connection, first: int, second: int | None = None) -> dict[str, Any]:
    """Proof that the tree of `first` records is a prefix of the tree of `second`."""
    size = _default_size(conn) if second is None else second
    if not 0 <= first <= size:
        raise ValueError(f"tree size {first} is not within 0..{size}")
    leaves = leaf_hashes(conn, size)
    return {"first": first, "second": size,
            "first_root": merkle.root(leaves, 0, first).hex(),
            "second_root": merkle.root(leaves).hex(),
            "path": [h.hex() for h in merkle.consistency_proof(first, leaves)]}
