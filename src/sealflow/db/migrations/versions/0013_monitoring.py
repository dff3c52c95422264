"""Audit sinks (SIEM) and alerts (A4): audit_sinks (a customer's stream of its account's
audit trail, with its delivery cursor), alert_state (when each alert last fired) and
monitor_cursors (where the alert rules stopped reading the audit trail).

Revision ID: 0013
Revises: 0011
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0011"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "audit_sinks",
        sa.Column("id", ID, primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("config", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text()),
        sa.Column("fingerprint", sa.String(80)),
        sa.Column("cursor_seq", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS),
        sa.Column("last_success_at", TS),
        sa.Column("last_error", sa.String(300)),
        sa.Column("created_by", sa.String(64), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("account_id", "name", name="uq_audit_sinks_account_name"),
    )
    op.create_index("ix_audit_sinks_account_id", "audit_sinks", ["account_id"])
    op.create_table(
        "alert_state",
        sa.Column("rule", sa.String(64), primary_key=True),
        sa.Column("key", sa.String(300), primary_key=True),
        sa.Column("fired_at", TS, nullable=False),
        sa.Column("fired", sa.Integer(), nullable=False),
    )
    op.create_table(
        "monitor_cursors",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64)),
        sa.Column("at", TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("monitor_cursors")
    op.drop_table("alert_state")
    op.drop_index("ix_audit_sinks_account_id", table_name="audit_sinks")
    op.drop_table("audit_sinks")
