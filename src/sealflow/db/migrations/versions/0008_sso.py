"""Single sign-on with OpenID Connect (I4): sso_providers, sso_identities, sso_states.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
ID = sa.String(36)


def upgrade() -> None:
    op.create_table(
        "sso_providers",
        sa.Column("account_id", ID, sa.ForeignKey("accounts.id"), primary_key=True),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("client_id", sa.Text(), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("default_role", sa.String(16), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "sso_identities",
        sa.Column("account_id", ID, nullable=False, primary_key=True),
        sa.Column("subject_hash", sa.String(64), nullable=False, primary_key=True),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_sso_identities_user_id", "sso_identities", ["user_id"])
    op.create_table(
        "sso_states",
        sa.Column("state_hash", sa.String(64), primary_key=True),
        sa.Column("account_id", ID, nullable=False),
        sa.Column("verifier", sa.Text(), nullable=False),
        sa.Column("nonce", sa.Text(), nullable=False),
        sa.Column("browser_hash", sa.String(64), nullable=False),
        sa.Column("expires_at", TS, nullable=False),
    )
    op.create_index("ix_sso_states_account_id", "sso_states", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_sso_states_account_id", table_name="sso_states")
    op.drop_table("sso_states")
    op.drop_index("ix_sso_identities_user_id", table_name="sso_identities")
    op.drop_table("sso_identities")
    op.drop_table("sso_providers")
