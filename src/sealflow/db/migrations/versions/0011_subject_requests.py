"""Data subject requests (D5): subject_requests.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("law", sa.String(8), nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requested_by", sa.String(80), nullable=False),
        sa.Column("received_at", TS, nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("completed_at", TS),
        sa.Column("outcome", sa.Text()),
    )
    op.create_index("ix_subject_requests_account_status", "subject_requests",
                    ["account_id", "status"])
    op.create_index("ix_subject_requests_user_id", "subject_requests", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_subject_requests_user_id", table_name="subject_requests")
    op.drop_index("ix_subject_requests_account_status", table_name="subject_requests")
    op.drop_table("subject_requests")
