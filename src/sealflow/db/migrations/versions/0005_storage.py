"""Data storage (D1): the per-account lookup secret, stored keys, and list elements.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "storage_lookup_keys",
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "storage_entries",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("scope_id", ID, nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key_name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Text()),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("next_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.UniqueConstraint(
            "account_id", "scope", "scope_id", "key_hash", name="uq_storage_entries_scope_key"
        ),
    )
    op.create_index("ix_storage_entries_scope", "storage_entries", ["scope", "scope_id"])
    op.create_table(
        "storage_items",
        sa.Column("id", ID, primary_key=True),
        sa.Column("entry_id", ID, sa.ForeignKey("storage_entries.id"), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.UniqueConstraint("entry_id", "seq", name="uq_storage_items_entry_seq"),
    )
    op.create_index("ix_storage_items_account_id", "storage_items", ["account_id"])


def downgrade() -> None:
    for table in ("storage_items", "storage_entries", "storage_lookup_keys"):
        op.drop_table(table)
