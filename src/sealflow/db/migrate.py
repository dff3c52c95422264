"""Runs the Alembic migrations of a cell database (`sealflow migrate`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(engine: Engine, script_location: Path = MIGRATIONS) -> Config:
    """An Alembic config whose env.py takes `engine` (cells here, key stores in vault/)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head", script_location: Path = MIGRATIONS) -> None:
    command.upgrade(alembic_config(engine, script_location), revision)


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
