"""Scoped, expiring API tokens (issue 5): api_tokens gains the member who made it (`user_id`,
NULL for the operator's), the role it acts with, its scopes (JSON list of permission names;
NULL: all of the role's) and `expires_at` (NULL: never). Existing tokens were made by the
operator and act as the account's owner: they become owner tokens with every scope.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.add_column(sa.Column("user_id", sa.String(36)))
        # Every existing token was the operator's, acting as the owner. (A default rather
        # than an UPDATE and NOT NULL after: that would make SQLite recreate the table.)
        batch.add_column(sa.Column("role", sa.String(16), nullable=False,
                                   server_default="owner"))
        batch.add_column(sa.Column("scopes", sa.Text()))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True)))
        batch.create_index("ix_api_tokens_user_id", ["user_id"])


def downgrade() -> None:
    # The old schema knows only full-owner, never-expiring tokens: revoke every other one
    # rather than let it widen to that.
    op.execute("UPDATE api_tokens SET revoked_at = CURRENT_TIMESTAMP WHERE revoked_at IS NULL "
               "AND (user_id IS NOT NULL OR role <> 'owner' OR scopes IS NOT NULL "
               "OR expires_at IS NOT NULL)")
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_index("ix_api_tokens_user_id")
        batch.drop_column("expires_at")
        batch.drop_column("scopes")
        batch.drop_column("role")
        batch.drop_column("user_id")
