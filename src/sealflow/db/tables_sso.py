"""Single sign-on with OpenID Connect (I4, migration 0008): the tables.
Kept apart from db/tables.py for size; imported (and re-exported) at its end."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, String, Table, Text

from sealflow.db.tables import ID, DateTime, metadata

# One provider per account; the
# client secret is sealed. `required` refuses the account's members their passwords.
sso_providers = Table(
    "sso_providers",
    metadata,
    Column("account_id", String(ID), ForeignKey("accounts.id"), primary_key=True),
    Column("issuer", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("client_secret", Text, nullable=False),  # secret
    Column("default_role", String(16), nullable=False),
    Column("required", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Which member an identity of the provider signs in as: SHA-256 of (issuer, sub), so a
# changed issuer never matches the old one's subjects. No foreign key to users: removing a
# member leaves a row that matches no one, replaced at that person's next SSO login.
sso_identities = Table(
    "sso_identities",
    metadata,
    Column("account_id", String(ID), nullable=False, primary_key=True),
    Column("subject_hash", String(64), nullable=False, primary_key=True),
    Column("user_id", String(ID), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# A login in flight: the state's hash (single use, 10 minutes) with the sealed PKCE verifier
# and nonce, like oauth_states.
sso_states = Table(
    "sso_states",
    metadata,
    Column("state_hash", String(64), primary_key=True),
    Column("account_id", String(ID), nullable=False, index=True),
    Column("verifier", Text, nullable=False),  # secret
    Column("nonce", Text, nullable=False),  # secret
    Column("browser_hash", String(64), nullable=False),  # SHA-256 of the browser's cookie
    Column("expires_at", DateTime(timezone=True), nullable=False),
)

