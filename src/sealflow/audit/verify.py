"""`sealflow audit verify`: re-derive everything from the records and compare.

One pass in seq order checks, for each record: no seq missing, canonical JSON, the seq,
region, account and time inside the record match its row (a record moved or swapped no
longer does), prev_hash links to the previous record, and the hash matches the content. The
same pass grows the RFC 9162 tree and, at each checkpoint's size, compares the signed root.
Checkpoints are checked for their signature (the public key comes from the key file or is
given), for going backwards, and for forks (two signed heads that cannot both be this log).

The first bad record is named by seq. An attacker with the file can rewrite a record and
recompute every hash after it: the chain is then whole, but the signed root of the next
checkpoint no longer matches, and the report names the first record that checkpoint covers
beyond the last checkpoint that still matches."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, func, select, text

from sealflow.audit import merkle
from sealflow.audit.canonical import NotCanonical, parse
from sealflow.audit.log import GENESIS, Checkpoint, chain_hash, checkpoints, iter_records
from sealflow.audit.records import format_time
from sealflow.audit.signing import Verifier
from sealflow.db.tables import audit_records

TRIGGERS = frozenset({"audit_records_no_update", "audit_records_no_delete",
                      "audit_checkpoints_no_update", "audit_checkpoints_no_delete"})
PG_TRIGGERS = frozenset({"audit_records_append_only", "audit_records_no_truncate",
                         "audit_checkpoints_append_only", "audit_checkpoints_no_truncate"})


def _missing_triggers(conn: Connection) -> list[str]:
    """The append-only triggers (of migration 0006) that are absent, or disabled on
    PostgreSQL."""
    if conn.dialect.name == "postgresql":
        present = set(conn.execute(text(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'D' AND "
            "tgrelid IN ('audit_records'::regclass, 'audit_checkpoints'::regclass)"
        )).scalars())
        return sorted(PG_TRIGGERS - present)
    present = set(conn.execute(text(
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN "
        "('audit_records', 'audit_checkpoints')"
    )).scalars())
    return sorted(TRIGGERS - present)


@dataclass(frozen=True)
class Problem:
    message: str
    seq: int | None = None  # the record at fault, when one can be named
    checkpoint: int | None = None

    def __str__(self) -> str:
        where = []
        if self.seq is not None:
            where.append(f"record {self.seq}")
        if self.checkpoint is not None:
            where.append(f"checkpoint {self.checkpoint}")
        return f"{', '.join(where) or 'log'}: {self.message}"


@dataclass
class Report:
    region: str
    records: int = 0
    checkpoints: int = 0
    signed_size: int = 0  # records covered by the last good checkpoint
    problems: list[Problem] = field(default_factory=list)
    signatures_checked: bool = True

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None


def _check_checkpoint(cp: Checkpoint, region: str, verifier: Verifier | None) -> str | None:
    try:
        body = parse(cp.body)
    except NotCanonical as err:
        return f"signed statement unreadable: {err}"
    if not isinstance(body, dict) or body.get("type") != "sealflow-audit-checkpoint":
        return "signed statement is not an audit checkpoint"
    if body.get("region") != region:
        return f"signed for region {body.get('region')!r}, not {region!r}"
    if body.get("tree_size") != cp.tree_size or body.get("root") != cp.root:
        return "tree size or root differ from the signed statement"
    if body.get("key_id") != cp.key_id or body.get("at") != format_time(cp.at):
        return "key id or time differ from the signed statement"
    if verifier is not None:
        if cp.key_id != verifier.key_id:
            return f"signed by unknown key {cp.key_id} (expected {verifier.key_id})"
        if not verifier.verify(cp.body.encode(), cp.signature):
            return "signature does not verify"
    return None


def verify(conn: Connection, region: str, verifier: Verifier | None,
           progress: Callable[[int, int], None] | None = None) -> Report:
    report = Report(region, signatures_checked=verifier is not None)
    problems = report.problems
    cps = checkpoints(conn)
    report.checkpoints = len(cps)
    good: list[Checkpoint] = []
    for cp in cps:
        bad = _check_checkpoint(cp, region, verifier)
        if bad:
            problems.append(Problem(bad, checkpoint=cp.id))
        else:
            good.append(cp)
    by_size: dict[int, list[Checkpoint]] = {}
    largest = 0
    for cp in good:
        if cp.tree_size < largest:
            problems.append(Problem(f"tree size {cp.tree_size} after a checkpoint of {largest}: "
                                    "the log went backwards", checkpoint=cp.id))
        largest = max(largest, cp.tree_size)
        same = by_size.setdefault(cp.tree_size, [])
        if same and same[0].root != cp.root:
            problems.append(Problem(f"fork: signs a different root than checkpoint {same[0].id} "
                                    f"for the same {cp.tree_size} records", checkpoint=cp.id))
        same.append(cp)

    missing = _missing_triggers(conn)
    if missing:
        problems.append(Problem(f"append-only triggers missing: {', '.join(missing)} (dropped "
                                "or disabled by someone with write access to the database)"))
    total = int(conn.execute(select(func.count()).select_from(audit_records)).scalar_one())
    frontier = merkle.Frontier()
    prev, expected, matched = GENESIS, 1, 0
    for row in iter_records(conn):
        seq = int(row.seq)
        fault = _check_record(row, seq, expected, prev, region)
        if fault is not None:
            problems.append(fault)
            break
        leaf = merkle.leaf_hash(row.record.encode())
        frontier.append(leaf)
        prev, expected = row.hash, seq + 1
        if seq in by_size:
            root = frontier.root().hex()
            agree = [cp for cp in by_size[seq] if cp.root == root]
            base, matched = matched, seq if agree else matched
            for cp in by_size[seq]:
                if cp.root == root:
                    continue
                if agree:  # the log matches another signed head of this size
                    problems.append(Problem(
                        f"fork: signs a root for {seq} records that is not this log's (checkpoint "
                        f"{agree[0].id} signs the log's)", checkpoint=cp.id))
                else:
                    problems.append(Problem(
                        f"the log's root at tree size {seq} differs from the signed one: a record "
                        f"in {base + 1}..{seq} was changed after signing, or the log was "
                        "replaced by a fork", seq=base + 1, checkpoint=cp.id))
        if progress is not None and seq % 1000 == 0:
            progress(seq, total)
    else:
        if largest > frontier.size:
            cp = max(good, key=lambda c: c.tree_size)
            problems.append(Problem(
                f"missing: the log ends at {frontier.size} but checkpoint {cp.id} signed "
                f"{largest} records (truncated)", seq=frontier.size + 1, checkpoint=cp.id))
    report.records = frontier.size
    report.signed_size = matched
    if progress is not None:
        progress(frontier.size, total)
    return report


def _check_record(r: Any, seq: int, expected: int, prev: str, region: str) -> Problem | None:
    record: str = r.record
    if seq != expected:
        return Problem(f"missing (the next record present is {seq}): deleted", seq=expected)
    try:
        body = parse(record)
    except NotCanonical as err:
        return Problem(f"content is not a canonical record ({err}): edited", seq=seq)
    if not isinstance(body, dict):
        return Problem("content is not a record object: edited", seq=seq)
    if body.get("seq") != seq:
        return Problem(f"content says seq {body.get('seq')}: moved, reordered or inserted",
                       seq=seq)
    if body.get("region") != region:
        return Problem(f"content says region {body.get('region')!r}: edited", seq=seq)
    if body.get("account_id") != r.account:
        return Problem("account column differs from the content: edited", seq=seq)
    at = r.at
    if at is None or body.get("at") != format_time(at):
        return Problem("time column differs from the content: edited", seq=seq)
    if r.prev_hash != prev:
        return Problem(f"prev_hash does not link to record {seq - 1}: chain broken "
                       "(a record before it was removed, replaced or inserted)", seq=seq)
    if chain_hash(prev, merkle.leaf_hash(record.encode())) != r.hash:  # parse: canonical
        return Problem("content does not match its hash: edited", seq=seq)
    return None


def report_json(report: Report) -> str:
    return json.dumps({
        "region": report.region, "ok": report.ok, "records": report.records,
        "checkpoints": report.checkpoints, "signed_size": report.signed_size,
        "signatures_checked": report.signatures_checked,
        "first_bad_seq": report.first_bad_seq,
        "problems": [{"seq": p.seq, "checkpoint": p.checkpoint, "message": p.message}
                     for p in report.problems],
    }, indent=2)
