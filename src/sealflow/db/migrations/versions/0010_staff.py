"""Platform staff and access grants (I7): platform_staff, staff_grants, staff_grant_reads,
and how each session was signed in (sessions.method).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "platform_staff",
        sa.Column("user_id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("added_at", TS, nullable=False),
        sa.Column("added_by", sa.String(64), nullable=False),
    )
    op.create_table(
        "staff_grants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("staff_user_id", ID, nullable=False),
        sa.Column("staff_region", sa.String(8), nullable=False),
        sa.Column("staff_account_id", ID, nullable=False),
        sa.Column("justification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.Column("decided_at", TS),
        sa.Column("decided_by", ID),
        sa.Column("revoked_at", TS),
        sa.Column("revoked_by", sa.String(80)),
    )
    op.create_index("ix_staff_grants_account_id", "staff_grants", ["account_id"])
    op.create_index("ix_staff_grants_staff_user_id", "staff_grants", ["staff_user_id"])
    op.create_table(
        "staff_grant_reads",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("grant_id", sa.String(64), nullable=False),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("method", sa.String(8), nullable=False),
        sa.Column("route", sa.String(200), nullable=False),
        sa.Column("path", sa.String(500), nullable=False),
    )
    op.create_index("ix_staff_grant_reads_grant_at", "staff_grant_reads", ["grant_id", "at"])
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("method", sa.String(32)))


def downgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("method")
    op.drop_index("ix_staff_grant_reads_grant_at", table_name="staff_grant_reads")
    op.drop_table("staff_grant_reads")
    op.drop_index("ix_staff_grants_staff_user_id", table_name="staff_grants")
    op.drop_index("ix_staff_grants_account_id", table_name="staff_grants")
    op.drop_table("staff_grants")
    op.drop_table("platform_staff")
