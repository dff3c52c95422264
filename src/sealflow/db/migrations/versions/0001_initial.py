"""The first tables: accounts, interim API tokens, workflows and versions, executions, step
runs and schedule state.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("region", sa.String(8), nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("last_used_at", TS),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_api_tokens_account_id", "api_tokens", ["account_id"])
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), sa.ForeignKey("accounts.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("webhook_token_hash", sa.String(64), unique=True),
        sa.Column("webhook_token", sa.Text),  # sealed (vault): ~104 characters
        sa.Column("webhook_secret", sa.Text),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("deleted_at", TS),
    )
    op.create_index("ix_workflows_account_id", "workflows", ["account_id"])
    op.create_table(
        "workflow_versions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(36), sa.ForeignKey("workflows.id"), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("document", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.UniqueConstraint("workflow_id", "version", name="uq_workflow_versions_workflow_version"),
    )
    op.create_index("ix_workflow_versions_account_id", "workflow_versions", ["account_id"])
    op.create_table(
        "executions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("workflow_id", sa.String(36), nullable=False),
        sa.Column("workflow_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("trigger_type", sa.String(16), nullable=False),
        sa.Column("trigger_payload", sa.Text, nullable=False),
        sa.Column("parent_id", sa.String(36)),
        sa.Column("call_depth", sa.Integer, nullable=False),
        sa.Column("respond_wait", sa.Boolean, nullable=False),
        sa.Column("response", sa.Text),
        sa.Column("result", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("platform_attempts", sa.Integer, nullable=False),
        sa.Column("steps_run", sa.Integer, nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_expires_at", TS),
        sa.Column("run_after", TS, nullable=False),
        sa.Column("cancel_requested", sa.Boolean, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS),
        sa.Column("finished_at", TS),
    )
    op.create_index("ix_executions_account_created", "executions", ["account_id", "created_at"])
    op.create_index("ix_executions_status_run_after", "executions", ["status", "run_after"])
    op.create_table(
        "step_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(36), sa.ForeignKey("executions.id"), nullable=False),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("path", sa.String(300), nullable=False),
        sa.Column("step_name", sa.String(64), nullable=False),
        sa.Column("connector", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("input", sa.Text),
        sa.Column("output", sa.Text),
        sa.Column("error", sa.Text),
        sa.Column("logs", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_step", sa.String(64)),
        sa.Column("duration_ms", sa.Float),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS),
        sa.UniqueConstraint("execution_id", "path", name="uq_step_runs_execution_path"),
    )
    op.create_table(
        "schedule_state",
        sa.Column("workflow_id", sa.String(36), sa.ForeignKey("workflows.id"), primary_key=True),
        sa.Column("account_id", sa.String(36), nullable=False),
        sa.Column("last_tick", TS, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "schedule_state",
        "step_runs",
        "executions",
        "workflow_versions",
        "workflows",
        "api_tokens",
        "accounts",
    ):
        op.drop_table(table)
