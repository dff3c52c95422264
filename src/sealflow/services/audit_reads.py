"""Customers read their account's audit trail (A1): filtered pages, a JSON-lines export, and
the proofs that a record is in the region's signed log (inclusion) and that the log only grew
(consistency). Only records of the caller's account are ever returned; a proof for another
account's record is a 404 like any other id.

Filters on actor and action are applied to the parsed records (the log stores canonical
JSON, indexed by seq and account only); pages are keyset-paginated by seq, so a page costs
at most `SCAN_LIMIT` rows however selective the filter."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from sealflow.audit import log
from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.db.tables import audit_records
from sealflow.regions.cells import Cells
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller

MAX_PAGE = 1000
SCAN_LIMIT = 20_000  # rows of the account read per page at most (a very selective filter)
_ACTIONS = {a.value for a in Action}


@dataclass(frozen=True)
class Filters:
    actor: str | None = None  # an actor id (a member's or token's id)
    action: str | None = None  # an action name, or a prefix ending in "." ("login.")
    since: datetime | None = None
    until: datetime | None = None

    def check(self) -> Filters:
        if self.action is not None and not (
                self.action in _ACTIONS or (self.action.endswith(".") and any(
                    a.startswith(self.action) for a in _ACTIONS))):
            raise InvalidInput("invalid filter", [Issue(
                "$.action", "unknown action; see the catalogue in the README (a prefix such "
                            "as 'login.' also works)")])
        if self.since and self.until and self.since > self.until:
            raise InvalidInput("invalid filter", [Issue("$.since", "is after until")])
        return self

    def match(self, record: dict[str, Any]) -> bool:
        if self.actor is not None and record["actor"]["id"] != self.actor:
            return False
        if self.action is None:
            return True
        action = str(record["action"])
        return action.startswith(self.action) if self.action.endswith(".") \
            else action == self.action


def _rows(conn: Connection, account_id: str, filters: Filters, after: int,
          batch: int = 500) -> Iterator[Any]:
    last = after
    while True:
        query = (select(audit_records.c.seq, audit_records.c.record, audit_records.c.hash)
                 .where(audit_records.c.account == account_id, audit_records.c.seq > last)
                 .order_by(audit_records.c.seq).limit(batch))
        if filters.since is not None:
            query = query.where(audit_records.c.at >= filters.since)
        if filters.until is not None:
            query = query.where(audit_records.c.at < filters.until)
        rows = conn.execute(query).all()
        yield from rows
        if len(rows) < batch:
            return
        last = int(rows[-1].seq)


def _shown(row: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads(row.record)
    record["hash"] = row.hash
    return record


def page(cells: Cells, caller: Caller, filters: Filters, *, after: int = 0,
         limit: int = 100) -> tuple[list[dict[str, Any]], int | None]:
    """Records after `after` (a seq) matching `filters`, oldest first, and the cursor of the
    next page (None at the end)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput("invalid page", [Issue("$.limit", f"must be 1 to {MAX_PAGE}")])
    filters.check()
    out: list[dict[str, Any]] = []
    scanned = 0
    last = after
    with cells[caller.region].read() as conn:
        for row in _rows(conn, caller.account_id, filters, after):
            scanned += 1
            last = int(row.seq)
            record = _shown(row)
            if filters.match(record):
                out.append(record)
                if len(out) == limit:
                    return out, last
            if scanned >= SCAN_LIMIT:
                return out, last
    return out, None


def export(cells: Cells, clock: Clock, caller: Caller, filters: Filters) -> Iterator[bytes]:
    """Every matching record as JSON lines (constant memory). The export itself is recorded
    first (A2: no record, no export)."""
    filters.check()
    cell = cells[caller.region]
    with cell.write() as conn:
        by_caller(cell, conn, caller, Action.EXPORT, f"account:{caller.account_id}",
                  clock.now(), what="audit trail", actor_filter=filters.actor,
                  action_filter=filters.action)

    def lines() -> Iterator[bytes]:
        with cell.read() as conn:
            for row in _rows(conn, caller.account_id, filters, 0):
                record = _shown(row)
                if filters.match(record):
                    yield json.dumps(record, separators=(",", ":")).encode() + b"\n"

    return lines()


def _own_record(conn: Connection, caller: Caller, seq: int) -> None:
    found = conn.execute(select(audit_records.c.seq).where(
        audit_records.c.seq == seq, audit_records.c.account == caller.account_id)).first()
    if found is None:
        raise NotFound(f"audit record {seq} not found")


def inclusion(cells: Cells, caller: Caller, seq: int) -> dict[str, Any]:
    """The record, its inclusion proof against the last signed checkpoint that covers it, the
    checkpoint and the region's public key: everything to check it offline."""
    cell = cells[caller.region]
    with cell.read() as conn:
        _own_record(conn, caller, seq)
        checkpoint = log.last_checkpoint(conn)
        if checkpoint is None or checkpoint.tree_size < seq:
            raise NotFound(f"audit record {seq} is not under a signed checkpoint yet (one is "
                           "signed every minute); try again shortly", retryable=True)
        proof = log.inclusion(conn, seq, checkpoint.tree_size)
        record = conn.execute(select(audit_records.c.record).where(
            audit_records.c.seq == seq)).scalar_one()
    return {"record": json.loads(record), "proof": proof, "checkpoint": checkpoint.as_json(),
            "public_key": cell.audit.signer.verifier.public_b64()}


def consistency(cells: Cells, caller: Caller, first: int,
                second: int | None = None) -> dict[str, Any]:
    """Proof that the log of `first` records is a prefix of the log of `second` (default: the
    last checkpoint): hashes only, nothing of any account."""
    cell = cells[caller.region]
    with cell.read() as conn:
        try:
            proof = log.consistency(conn, first, second)
        except ValueError as err:
            field = "$.first" if second is None or first <= second else "$.second"
            if second is not None and second > log.head(conn)[0]:
                field = "$.second"
            raise InvalidInput("invalid proof request", [Issue(field, str(err))]) from None
        checkpoint = log.last_checkpoint(conn)
    return {"proof": proof, "checkpoint": None if checkpoint is None else checkpoint.as_json(),
            "public_key": cell.audit.signer.verifier.public_b64()}
