"""The audit log on real SQLite files (A1, A2). The attacker has the database file: they drop
the append-only triggers and edit, delete, insert or reorder rows with sqlite3, even
recomputing every hash. `audit verify` names the record; checkpoints signed by the key
outside the database catch what the chain alone cannot (rewrites, truncation, forks). An
action whose audit record cannot be written does not happen."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, Row, delete, func, insert, select, update
from sqlalchemy.exc import DatabaseError

from sealflow.audit import log, merkle
from sealflow.audit.canonical import canonical
from sealflow.audit.records import Action, Actor, ActorKind, AuditEvent
from sealflow.audit.signing import Signer, key_path
from sealflow.audit.verify import Report, verify
from sealflow.db.engine import make_engine
from sealflow.db.migrate import upgrade
from sealflow.db.tables import audit_checkpoints, audit_records, login_failures

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
REGION = "eu"


def event(i: int, at: datetime = T0) -> AuditEvent:
    return AuditEvent(REGION, f"acc-{i % 3}", Actor(ActorKind.USER, f"user-{i % 5}"),
                      Action.WORKFLOW_CHANGED, f"workflow:{i}", at, {"n": i})


def migrated(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def fill(engine: Engine, signer: Signer, n: int, checkpoint_every: int = 0) -> None:
    with engine.begin() as conn:
        for i in range(1, n + 1):
            log.append(conn, event(i, T0 + timedelta(seconds=i)))
            if checkpoint_every and i % checkpoint_every == 0:
                log.checkpoint(conn, REGION, signer, T0 + timedelta(seconds=i))


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer.load(key_path(tmp_path, REGION), create=True)


@pytest.fixture
def db(tmp_path: Path, signer: Signer) -> Iterator[Path]:
    """A log of 30 records with checkpoints at 10, 20 and 30."""
    path = tmp_path / "eu.db"
    engine = migrated(path)
    fill(engine, signer, 30, checkpoint_every=10)
    engine.dispose()
    yield path


def check(path: Path, signer: Signer | None) -> Report:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            return verify(conn, REGION, None if signer is None else signer.verifier)
    finally:
        engine.dispose()


def attacker(path: Path) -> sqlite3.Connection:
    """sqlite3 on the file, append-only triggers dropped (what file access allows)."""
    conn = sqlite3.connect(path, isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    return conn


def restore_triggers(conn: sqlite3.Connection) -> None:
    """The careful attacker puts the triggers back, so only the content can give them away."""
    for table in ("audit_records", "audit_checkpoints"):
        for verb in ("update", "delete"):
            conn.execute(f"CREATE TRIGGER {table}_no_{verb} BEFORE {verb.upper()} ON {table} "
                         "BEGIN SELECT RAISE(ABORT, 'audit records are append-only'); END")


def first_problem(report: Report) -> str:
    assert not report.ok
    return str(report.problems[0])


def test_an_untouched_log_verifies_and_its_proofs_check_against_signed_roots(
    db: Path, signer: Signer
) -> None:
    report = check(db, signer)
    assert report.ok, report.problems
    assert (report.records, report.checkpoints, report.signed_size) == (30, 3, 30)
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        cps = log.checkpoints(conn)
        for cp in cps:
            assert signer.verifier.verify(cp.body.encode(), cp.signature)
        proof = log.inclusion(conn, 7)  # default: the last checkpoint's tree
        assert proof["tree_size"] == 30 and proof["root"] == cps[-1].root
        assert merkle.verify_inclusion(6, 30, bytes.fromhex(proof["leaf_hash"]),
                                       [bytes.fromhex(h) for h in proof["path"]],
                                       bytes.fromhex(cps[-1].root))
        row = conn.execute(select(audit_records.c.record).where(audit_records.c.seq == 7)).one()
        assert proof["leaf_hash"] == merkle.leaf_hash(row.record.encode()).hex()
        cons = log.consistency(conn, 10, 30)
        assert (cons["first_root"], cons["second_root"]) == (cps[0].root, cps[2].root)
        assert merkle.verify_consistency(10, 30, bytes.fromhex(cps[0].root),
                                         bytes.fromhex(cps[2].root),
                                         [bytes.fromhex(h) for h in cons["path"]])
        with pytest.raises(ValueError):
            log.inclusion(conn, 31)
        with pytest.raises(ValueError):
            log.consistency(conn, 31)
    engine.dispose()


def test_update_and_delete_are_refused_by_the_database(db: Path) -> None:
    engine = make_engine(f"sqlite:///{db}")
    for statement in (
        update(audit_records).where(audit_records.c.seq == 3).values(record="{}"),
        delete(audit_records).where(audit_records.c.seq == 3),
        update(audit_checkpoints).values(root_hash="00"),
        delete(audit_checkpoints),
    ):
        with pytest.raises(DatabaseError, match="append-only"), engine.begin() as conn:
            conn.execute(statement)
    engine.dispose()
    assert check(db, None).ok


def test_an_edited_record_is_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    record = json.loads(conn.execute("SELECT record FROM audit_records WHERE seq = 12").fetchone()[0])
    record["details"]["n"] = 999
    conn.execute("UPDATE audit_records SET record = ? WHERE seq = 12",
                 (canonical(record).decode(),))
    restore_triggers(conn)
    conn.close()
    assert first_problem(check(db, signer)) == "record 12: content does not match its hash: edited"


def test_an_edit_with_its_own_hash_recomputed_breaks_the_next_link(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    prev, text = conn.execute("SELECT prev_hash, record FROM audit_records WHERE seq = 12").fetchone()
    edited = text.replace('"n":12', '"n":13').encode()
    conn.execute("UPDATE audit_records SET record = ?, hash = ? WHERE seq = 12",
                 (edited.decode(), log.chain_hash(prev, merkle.leaf_hash(edited))))
    conn.close()
    report = check(db, signer)
    assert str(report.problems[0]).startswith("log: append-only triggers missing")
    assert str(report.problems[1]).startswith("record 13: prev_hash does not link to record 12")
    assert report.first_bad_seq == 13


def test_a_non_canonical_or_moved_column_is_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    conn.execute("UPDATE audit_records SET record = ' ' || record WHERE seq = 4")
    conn.close()
    assert check(db, signer).first_bad_seq == 4
    assert "canonical" in str(check(db, signer).problems[-1])


def test_a_changed_account_or_time_column_is_named(tmp_path: Path, signer: Signer) -> None:
    for column, value in (("account", "acc-x"), ("at", "2020-01-01 00:00:00.000000")):
        path = tmp_path / f"{column}.db"
        engine = migrated(path)
        fill(engine, signer, 5)
        engine.dispose()
        conn = attacker(path)
        conn.execute(f"UPDATE audit_records SET {column} = ? WHERE seq = 2", (value,))
        restore_triggers(conn)
        conn.close()
        assert first_problem(check(path, signer)).startswith("record 2:")


def test_a_deleted_record_is_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    conn.execute("DELETE FROM audit_records WHERE seq = 17")
    restore_triggers(conn)
    conn.close()
    assert first_problem(check(db, signer)) == (
        "record 17: missing (the next record present is 18): deleted")


def test_an_inserted_record_is_named(db: Path, signer: Signer) -> None:
    """A forged record slipped in at 6, later ones renumbered; the forgery's own hash is
    right, so the first record that no longer fits (the old 6, now 7) is named."""
    conn = attacker(db)
    for seq in range(30, 5, -1):
        conn.execute("UPDATE audit_records SET seq = ? WHERE seq = ?", (seq + 1, seq))
    prev = conn.execute("SELECT hash FROM audit_records WHERE seq = 5").fetchone()[0]
    forged = canonical(event(99).body(6))
    conn.execute(
        "INSERT INTO audit_records (seq, account, at, record, prev_hash, hash) "
        "VALUES (6, 'acc-0', ?, ?, ?, ?)",
        (T0.replace(tzinfo=None).isoformat(" "), forged.decode(), prev,
         log.chain_hash(prev, merkle.leaf_hash(forged))))
    restore_triggers(conn)
    conn.close()
    problem = first_problem(check(db, signer))
    assert problem == "record 7: content says seq 6: moved, reordered or inserted"


def test_reordered_records_are_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    rows = {seq: rest for seq, *rest in conn.execute(
        "SELECT seq, account, at, record, prev_hash, hash FROM audit_records "
        "WHERE seq IN (8, 9)")}
    for seq, other in ((8, 9), (9, 8)):
        conn.execute("UPDATE audit_records SET account = ?, at = ?, record = ?, "
                     "prev_hash = ?, hash = ? WHERE seq = ?", (*rows[other], seq))
    restore_triggers(conn)
    conn.close()
    assert first_problem(check(db, signer)) == (
        "record 8: content says seq 9: moved, reordered or inserted")


def test_a_rewrite_with_every_hash_recomputed_is_caught_by_the_signed_checkpoint(
    db: Path, signer: Signer
) -> None:
    conn = attacker(db)
    prev = conn.execute("SELECT hash FROM audit_records WHERE seq = 14").fetchone()[0]
    for seq in range(15, 31):
        text = conn.execute("SELECT record FROM audit_records WHERE seq = ?", (seq,)).fetchone()[0]
        if seq == 15:
            text = text.replace('"n":15', '"n":0')
        h = log.chain_hash(prev, merkle.leaf_hash(text.encode()))
        conn.execute("UPDATE audit_records SET record = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                     (text, prev, h, seq))
        prev = h
    restore_triggers(conn)
    conn.close()
    report = check(db, signer)
    assert report.first_bad_seq == 11  # the record lies after checkpoint 1 (size 10)
    assert str(report.problems[0]).startswith(
        "record 11, checkpoint 2: the log's root at tree size 20 differs from the signed one")
    assert report.signed_size == 10


def test_truncation_after_a_checkpoint_is_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    conn.execute("DELETE FROM audit_records WHERE seq > 25")
    restore_triggers(conn)
    conn.close()
    assert first_problem(check(db, signer)) == (
        "record 26, checkpoint 3: missing: the log ends at 25 but checkpoint 3 signed 30 "
        "records (truncated)")


def test_a_forged_or_edited_checkpoint_is_named(db: Path, signer: Signer) -> None:
    conn = attacker(db)
    conn.execute("UPDATE audit_checkpoints SET signature = ? WHERE id = 2",
                 (Signer.generate().sign(b"x"),))
    restore_triggers(conn)
    conn.close()
    assert first_problem(check(db, signer)) == "checkpoint 2: signature does not verify"
    assert check(db, Signer.generate()).problems[0].message.startswith("signed by unknown key")
    conn = attacker(db)
    conn.execute("UPDATE audit_checkpoints SET root_hash = ? WHERE id = 1", ("ab" * 32,))
    conn.close()
    assert any("differ from the signed statement" in str(p) for p in check(db, signer).problems)


def test_two_inconsistent_checkpoints_a_fork_are_detected(
    tmp_path: Path, db: Path, signer: Signer
) -> None:
    """Another log, signed with the same key (a restored backup that went its own way):
    its checkpoint for the same 20 records cannot be this log's."""
    other = tmp_path / "other.db"
    engine = migrated(other)
    with engine.begin() as conn:
        for i in range(1, 21):
            log.append(conn, event(i + 1000, T0))
        fork = log.checkpoint(conn, REGION, signer, T0)
    engine.dispose()
    assert fork is not None
    engine = make_engine(f"sqlite:///{db}")
    with engine.begin() as conn:  # inserting is allowed: the log is append-only
        conn.execute(insert(audit_checkpoints).values(
            tree_size=fork.tree_size, root_hash=fork.root, at=fork.at, body=fork.body,
            signature=fork.signature, key_id=fork.key_id, frontier="[]"))
    engine.dispose()
    report = check(db, signer)
    messages = [str(p) for p in report.problems]
    assert messages[0] == ("checkpoint 4: tree size 20 after a checkpoint of 30: "
                           "the log went backwards")
    assert messages[1].startswith("checkpoint 4: fork: signs a different root than "
                                  "checkpoint 2 for the same 20 records")
    assert messages[2] == ("checkpoint 4: fork: signs a root for 20 records that is not this "
                           "log's (checkpoint 2 signs the log's)")
    assert len(messages) == 3 and report.signed_size == 30


def test_dropped_triggers_are_reported(db: Path, signer: Signer) -> None:
    attacker(db).close()
    assert first_problem(check(db, signer)).startswith("log: append-only triggers missing")


def record_login_failure(engine: Engine, key: str, now: datetime) -> None:
    """An action in the house style: its row and its audit record in one transaction."""
    with engine.begin() as conn:
        conn.execute(insert(login_failures).values(key=key, at=now))
        log.append(conn, AuditEvent(REGION, None, Actor(ActorKind.ANONYMOUS, "-"),
                                    Action.LOGIN_FAILED, key, now))


def test_an_action_whose_audit_record_cannot_be_written_does_not_happen(db: Path) -> None:
    engine = make_engine(f"sqlite:///{db}")
    record_login_failure(engine, "user:1", T0)
    with sqlite3.connect(db) as conn:  # the audit table refuses inserts (disk full, say)
        conn.execute("CREATE TRIGGER audit_full BEFORE INSERT ON audit_records "
                     "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
    with pytest.raises(DatabaseError, match="disk is full"):
        record_login_failure(engine, "user:2", T0)
    with engine.connect() as conn:
        keys = conn.execute(select(login_failures.c.key)).scalars().all()
        size = conn.execute(select(func.count()).select_from(audit_records)).scalar_one()
    engine.dispose()
    assert keys == ["user:1"] and size == 31


def test_the_checkpointer_signs_every_1000_records_or_60_seconds(
    tmp_path: Path, signer: Signer
) -> None:
    engine = migrated(tmp_path / "cp.db")
    checkpointer = log.Checkpointer(REGION, signer)
    now = T0
    made = []
    with engine.begin() as conn:
        for i in range(1, 2501):
            seq = log.append(conn, event(i, now))
            cp = checkpointer.after_append(conn, seq, now)
            if cp:
                made.append(cp.tree_size)
        now += timedelta(seconds=61)
        seq = log.append(conn, event(0, now))
        cp = checkpointer.after_append(conn, seq, now)
        made.append(cp.tree_size if cp else 0)
        assert log.checkpoint(conn, REGION, signer, now) is None  # nothing new
    assert made == [1000, 2000, 2501]
    # A fresh checkpointer (a restart) picks up where the last checkpoint left off.
    again = log.Checkpointer(REGION, signer)
    with engine.begin() as conn:
        seq = log.append(conn, event(1, now))
        assert again.after_append(conn, seq, now) is None
        last: Row[tuple[int]] | None = conn.execute(
            select(func.max(audit_checkpoints.c.tree_size))).first()
    engine.dispose()
    assert last is not None and last[0] == 2501
    report = check(tmp_path / "cp.db", signer)
    assert report.ok and report.signed_size == 2501 and report.records == 2502
