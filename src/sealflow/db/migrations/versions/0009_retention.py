"""Retention and purge (D3): executions.purged (the purge's progress marker) with the index
the purge walks, and purge_runs (what each run removed).

Adding a column with a constant default is a metadata-only change in both SQLite and
PostgreSQL 11+: no table rewrite, so this is quick even on a large executions table (the
index build reads it once).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.add_column("executions", sa.Column("purged", sa.Integer(), nullable=False,
                                          server_default="0"))
    op.create_index("ix_executions_retention", "executions",
                    ["account_id", "purged", "finished_at"])
    op.create_table(
        "purge_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.Column("complete", sa.Boolean(), nullable=False),
        sa.Column("batches", sa.Integer(), nullable=False),
        sa.Column("execution_data_cleared", sa.Integer(), nullable=False),
        sa.Column("step_logs_cleared", sa.Integer(), nullable=False),
        sa.Column("executions_deleted", sa.Integer(), nullable=False),
        sa.Column("step_runs_deleted", sa.Integer(), nullable=False),
        sa.Column("log_files_deleted", sa.Integer(), nullable=False),
        sa.Column("pages_freed", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("purge_runs")
    op.drop_index("ix_executions_retention", table_name="executions")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite >= 3.35 drops a column in place; Alembic's batch mode would rebuild the
        # table, which step_runs' foreign key to it makes fragile.
        op.execute("ALTER TABLE executions DROP COLUMN purged")
    else:
        op.drop_column("executions", "purged")
