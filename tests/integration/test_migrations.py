"""Alembic migrations of a cell database (real SQLite files): the migrated schema is exactly
sealflow.db.tables.metadata, migrating again is a no-op, the way down and back up works, and
the file is set up for WAL and incremental auto-vacuum (D3: purges give disk space back)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, insert, inspect, select

from sealflow.db.engine import make_engine
from sealflow.db.migrate import alembic_config, current_revision, upgrade
from sealflow.db.tables import accounts, metadata


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    return tmp_path / "us.db"


@pytest.fixture
def engine(db_file: Path) -> Iterator[Engine]:
    e = make_engine(f"sqlite:///{db_file}")
    yield e
    e.dispose()


def head(engine: Engine) -> str:
    return str(ScriptDirectory.from_config(alembic_config(engine)).get_current_head())


def differences(engine: Engine, target: MetaData = metadata) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return list(compare_metadata(context, target))


def schema(db_file: Path) -> list[tuple[str, str, str]]:
    """Every table, index and trigger of the file, as SQLite stores its definition."""
    with sqlite3.connect(db_file) as conn:
        return sorted(conn.execute(
            "SELECT type, name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall())


def app_tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names()) - {"alembic_version"}


def test_a_fresh_file_migrates_to_exactly_the_tables_of_the_metadata(engine: Engine) -> None:
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head(engine)
    assert app_tables(engine) == set(metadata.tables)
    assert differences(engine) == []
    # Indexes and unique constraints of the metadata exist under their names.
    insp = inspect(engine)
    assert {i["name"] for i in insp.get_indexes("executions")} >= {
        "ix_executions_account_created", "ix_executions_status_run_after"}
    assert {u["name"] for u in insp.get_unique_constraints("step_runs")} == {
        "uq_step_runs_execution_path"}
    assert {fk["referred_table"] for fk in insp.get_foreign_keys("workflows")} == {"accounts"}


def test_the_comparison_does_see_a_difference(engine: Engine) -> None:
    """The check above is not vacuous: a table or a column type the migrations lack shows."""
    upgrade(engine)
    probe = MetaData()
    for table in metadata.tables.values():
        table.to_metadata(probe)
    Table("extra", probe, Column("id", Integer, primary_key=True))
    probe.tables["accounts"].c.region.type = String(16)
    kinds = {d[0] if isinstance(d, tuple) else d[0][0] for d in differences(engine, probe)}
    assert kinds == {"add_table", "modify_type"}


def test_migrating_twice_is_a_no_op(engine: Engine, db_file: Path) -> None:
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(accounts).values(id="a1", name="Acme", region="us",
                                             created_at=datetime.now(UTC)))
    before = schema(db_file)
    upgrade(engine)
    assert schema(db_file) == before
    assert current_revision(engine) == head(engine)
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT count(*) FROM alembic_version").fetchone() == (1,)
    with engine.connect() as conn:
        assert conn.execute(select(accounts.c.name)).scalars().all() == ["Acme"]


def test_downgrade_to_base_and_upgrade_again(engine: Engine, db_file: Path) -> None:
    upgrade(engine)
    migrated = schema(db_file)
    command.downgrade(alembic_config(engine), "base")
    assert current_revision(engine) is None
    assert app_tables(engine) == set()
    upgrade(engine)
    assert current_revision(engine) == head(engine)
    assert schema(db_file) == migrated
    assert differences(engine) == []


def test_the_file_uses_wal_and_incremental_auto_vacuum(engine: Engine, db_file: Path) -> None:
    upgrade(engine)
    engine.dispose()
    # A plain connection, without sealflow's connect-time pragmas: both are kept in the file.
    conn = sqlite3.connect(db_file)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    finally:
        conn.close()


def test_every_region_gets_its_own_migrated_file(tmp_path: Path) -> None:
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.config import Settings

    cells = build_cells(Settings(data_dir=tmp_path / "data"))
    try:
        migrate_all(cells)
        for region in ("us", "eu", "apac"):
            assert current_revision(cells[region].engine) == head(cells[region].engine)
            assert (tmp_path / "data" / f"{region}.db").is_file()
    finally:
        cells.dispose()
