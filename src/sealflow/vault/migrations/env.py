"""Alembic environment of the key store: the engine is handed in by
sealflow.vault.keystore.upgrade_keystore; its version table is `alembic_version_keys`, so the
key store can never be mistaken for (or migrated as) a cell database."""

from __future__ import annotations

from alembic import context

from sealflow.vault.keystore import VERSION_TABLE, metadata

engine = context.config.attributes["engine"]
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
