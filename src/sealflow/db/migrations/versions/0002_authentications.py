"""Stored authentications, OAuth connect states and account deletion records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "authentications",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("shared", sa.Boolean(), nullable=False),
        sa.Column("owner_id", sa.String(36), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("expires_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.UniqueConstraint("account_id", "name", name="uq_authentications_account_name"),
    )
    op.create_table(
        "oauth_states",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("authentication_id", sa.String(36), nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_oauth_states_account_id", "oauth_states", ["account_id"])
    op.create_table(
        "account_deletions",
        sa.Column("account_id", sa.String(36), primary_key=True),
        sa.Column("deleted_at", TS, nullable=False),
        sa.Column("removed", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    for table in ("account_deletions", "oauth_states", "authentications"):
        op.drop_table(table)
