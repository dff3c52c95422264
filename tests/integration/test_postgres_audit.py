"""The audit log's PostgreSQL paths (tests/integration/test_audit_log.py opens SQLite files):
appends from concurrent transactions are serialised by the advisory lock (no seq taken twice,
one unbroken chain), verify reads the chain and the checkpoints back, and a disabled
append-only trigger or a rewritten record is named."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from sealflow.audit import log
from sealflow.audit.records import Action, Actor, ActorKind, AuditEvent
from sealflow.audit.signing import Signer, key_path
from sealflow.audit.verify import verify
from sealflow.db.engine import make_engine
from tests.support.postgres import PgDatabases

REGION = "eu"
T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def event(i: int) -> AuditEvent:
    return AuditEvent(REGION, f"acc-{i % 3}", Actor(ActorKind.USER, f"user-{i % 5}"),
                      Action.WORKFLOW_CHANGED, f"workflow:{i}", T0 + timedelta(seconds=i),
                      {"n": i})


@pytest.fixture
def engine(pg_databases: PgDatabases) -> Iterator[Engine]:
    url = pg_databases.create()  # migrated: the append-only triggers are in place
    e = make_engine(url)
    yield e
    e.dispose()
    pg_databases.drop(url)


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return Signer.load(key_path(tmp_path, REGION), create=True)


def test_concurrent_appends_make_one_unbroken_chain(engine: Engine, signer: Signer) -> None:
    start = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer(base: int) -> None:
        try:
            start.wait()
            for i in range(base, base + 15):
                with engine.begin() as conn:  # one transaction per record, four at once
                    log.append(conn, event(i))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(100 * k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    with engine.begin() as conn:
        assert log.checkpoint(conn, REGION, signer, T0 + timedelta(hours=1)) is not None
    with engine.connect() as conn:
        assert [r.seq for r in log.iter_records(conn)] == list(range(1, 61))
        report = verify(conn, REGION, signer.verifier)
    assert report.ok, report.problems
    assert (report.records, report.checkpoints, report.signed_size) == (60, 1, 60)


def test_a_disabled_trigger_and_a_rewritten_record_are_named(engine: Engine,
                                                              signer: Signer) -> None:
    with engine.begin() as conn:
        for i in range(1, 11):
            log.append(conn, event(i))
        log.checkpoint(conn, REGION, signer, T0 + timedelta(hours=1))
    # What the table's owner can do: switch the trigger off and rewrite record 4.
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_records DISABLE TRIGGER audit_records_append_only"))
        conn.execute(text("UPDATE audit_records SET record = replace(record, 'workflow:4', "
                          "'workflow:x') WHERE seq = 4"))
    with engine.connect() as conn:
        report = verify(conn, REGION, signer.verifier)
    assert not report.ok
    text_of = [str(p) for p in report.problems]
    assert any("audit_records_append_only" in p for p in text_of), text_of
    assert any(p.seq == 4 for p in report.problems), text_of
