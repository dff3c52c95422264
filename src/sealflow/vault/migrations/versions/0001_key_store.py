"""The key store: wrapped account keysets and tombstones of shredded accounts.

Revision ID: keys_0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "keys_0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "account_keysets",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("keyset", sa.LargeBinary(), nullable=False),
        sa.Column("kek_version", sa.Integer(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("rotated_at", TS, nullable=True),
    )
    op.create_index("ix_account_keysets_kek_version", "account_keysets", ["kek_version"])
    op.create_table(
        "tombstones",
        sa.Column("account_id", sa.String(64), primary_key=True),
        sa.Column("shredded_at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tombstones")
    op.drop_index("ix_account_keysets_kek_version", table_name="account_keysets")
    op.drop_table("account_keysets")
