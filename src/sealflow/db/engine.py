"""Database engines for cells. SQLite gets WAL (readers never block the writer), incremental
auto-vacuum (so purges can give disk space back, D3) and a busy timeout; PostgreSQL is used
as configured, through psycopg 3 (`postgresql://` URLs included), and its read transactions
are read-only snapshots, as SQLite's are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url


def make_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 10},
            pool_size=8,
            max_overflow=8,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so that
        # transactions are real and writes take the lock at BEGIN (no upgrade deadlocks).
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.drivername == "postgresql":  # a bare URL: psycopg 3, not SQLAlchemy's psycopg2
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine = create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    if engine.dialect.name == "postgresql":
        event.listen(engine, "begin", _postgres_begin)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # autocommit at the driver; BEGIN issued by _sqlite_begin
    cur = dbapi_conn.cursor()
    # auto_vacuum only takes effect on a new file (before the first table); harmless later.
    cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    # Writers take the lock at BEGIN: a deferred transaction that later writes can fail with
    # SQLITE_BUSY at once (no busy wait) when another writer committed in between. Readers
    # ask for a deferred BEGIN through the `readonly` execution option (see regions.cells).
    # Straight to the driver: exec_driver_sql would run the whole statement machinery
    # (events, cursor, result) for a BEGIN on every transaction.
    sql = "BEGIN" if conn.get_execution_options().get("readonly") else "BEGIN IMMEDIATE"
    conn.connection.driver_connection.execute(sql)


def _postgres_begin(conn: Any) -> None:
    # Cell.read() promises a consistent snapshot: at PostgreSQL's default READ COMMITTED each
    # statement would see the commits made since the previous one (an audit chain read in two
    # queries could disagree with itself). REPEATABLE READ gives one snapshot for the whole
    # transaction; READ ONLY refuses a write slipped into a read. A read-only transaction
    # never fails with a serialization error, so no caller has to retry. Writers keep READ
    # COMMITTED and take the locks they need (audit.log, services.keys, queue.embedded).
    if conn.get_execution_options().get("readonly"):
        conn.connection.driver_connection.execute(
            "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
