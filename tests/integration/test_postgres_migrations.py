"""The cell migrations on a real PostgreSQL 15 (tests/support/postgres.py starts a throwaway
cluster, or reuses the one `make test` started): the migrated schema is exactly the metadata,
the way down and back up works, the audit tables refuse UPDATE, DELETE and TRUNCATE, and the
test cluster is the one the issue asks for (127.0.0.1 only, password, run by another user)."""

from __future__ import annotations

import glob
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.exc import DBAPIError

from sealflow.db.engine import make_engine
from sealflow.db.migrate import alembic_config, current_revision, upgrade
from sealflow.db.tables import accounts, metadata
from tests.support.postgres import PgDatabases


@pytest.fixture
def engine(pg_databases: PgDatabases) -> Iterator[Engine]:
    """An empty database (not the migrated template): the migrations start from nothing."""
    url = pg_databases.create(migrated=False)
    e = make_engine(url)
    yield e
    e.dispose()
    pg_databases.drop(url)


def head(engine: Engine) -> str:
    return str(ScriptDirectory.from_config(alembic_config(engine)).get_current_head())


def differences(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(context, metadata))


def app_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_a_bare_postgresql_url_connects_through_psycopg_3(engine: Engine) -> None:
    """As an operator writes it (`postgresql://user:password@host/db`): psycopg 3, not
    SQLAlchemy's default psycopg2, and the password is kept (str(URL) would mask it)."""
    assert engine.dialect.driver == "psycopg"
    bare = make_engine(engine.url.set(drivername="postgresql").render_as_string(False))
    try:
        assert bare.dialect.driver == "psycopg"
        with bare.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        bare.dispose()


def test_reads_are_read_only_snapshots_and_writes_are_not(engine: Engine) -> None:
    """Cell.read() (the `readonly` option) sees one snapshot for its whole transaction and
    cannot write; other transactions are plain read-write ones."""
    upgrade(engine)
    at = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    with engine.connect() as reader:
        reader = reader.execution_options(readonly=True)
        with reader.begin():
            assert reader.execute(select(accounts.c.id)).all() == []
            with engine.begin() as writer:  # commits while the read is open
                writer.execute(insert(accounts).values(id="a1", name="Acme", region="us",
                                                       created_at=at))
            assert reader.execute(select(accounts.c.id)).all() == []  # still its snapshot
            assert reader.execute(text("SHOW transaction_read_only")).scalar_one() == "on"
        with reader.begin():  # the next read transaction sees the commit
            assert reader.execute(select(accounts.c.id)).scalars().all() == ["a1"]
        with pytest.raises(DBAPIError, match="read-only transaction"), reader.begin():
            reader.execute(insert(accounts).values(id="a2", name="B", region="us",
                                                   created_at=at))
    with engine.begin() as conn:
        assert conn.execute(text("SHOW transaction_read_only")).scalar_one() == "off"


def test_a_fresh_database_migrates_to_exactly_the_metadata(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head(engine)
    assert app_tables(engine) == set(metadata.tables)
    assert differences(engine) == []
    upgrade(engine)  # again: a no-op
    assert current_revision(engine) == head(engine)


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    upgrade(engine)
    command.downgrade(alembic_config(engine), "base")
    assert current_revision(engine) is None
    assert app_tables(engine) == set()
    with engine.connect() as conn:  # the trigger function went with 0006's downgrade
        assert conn.execute(text(
            "SELECT count(*) FROM pg_proc WHERE proname = 'sealflow_audit_append_only'"
        )).scalar_one() == 0
    upgrade(engine)
    assert differences(engine) == []


@pytest.mark.parametrize("statement", [
    "UPDATE audit_records SET record = 'forged'",
    "DELETE FROM audit_records",
    "TRUNCATE audit_records",
])
def test_audit_records_are_append_only(engine: Engine, statement: str) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_records (seq, account, at, record, prev_hash, hash) "
            "VALUES (1, NULL, now(), '{}', :z, :z)"), {"z": "0" * 64})
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT record FROM audit_records")).scalars().all() == ["{}"]


def test_aware_datetimes_round_trip(engine: Engine) -> None:
    upgrade(engine)
    at = datetime(2026, 11, 29, 12, 30, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(id="a1", name="Acme", region="us", created_at=at))
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.created_at)).scalar_one() == at


def test_each_test_gets_a_fresh_database(pg_databases: PgDatabases) -> None:
    first, second = pg_databases.create(), pg_databases.create()
    try:
        assert first != second
        for url in (first, second):  # copies of the migrated template, nothing in them
            e = make_engine(url)
            try:
                assert current_revision(e) == head(e)
                with e.connect() as conn:
                    assert conn.execute(select(accounts.c.id)).all() == []
            finally:
                e.dispose()
    finally:
        pg_databases.drop(first)
        pg_databases.drop(second)


def test_the_cluster_is_local_and_not_run_by_us(pg_databases: PgDatabases) -> None:
    import psycopg

    e = make_engine(pg_databases.base_dsn)
    try:
        with e.connect() as conn:
            assert conn.execute(text("SHOW listen_addresses")).scalar_one() == "127.0.0.1"
            assert conn.execute(text("SHOW server_version_num")).scalar_one().startswith("15")
            port = conn.execute(text("SHOW port")).scalar_one()
            assert conn.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                                     )).scalar_one() is False
    finally:
        e.dispose()
    # Its socket is in a directory under /tmp (where tests/support/postgres.py puts it).
    assert glob.glob(f"/tmp/sealflow-pg.*/sock/.s.PGSQL.{port}")
    # Without the password the cluster refuses the connection (no trust auth).
    url = e.url
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(host="127.0.0.1", port=url.port, user=url.username, dbname="postgres",
                        password="wrong", connect_timeout=5).close()
