"""Platform staff and access grants (I7): the tables.
Kept apart from db/tables.py for size; imported at its end so `metadata` is whole.

No foreign keys to users or accounts on purpose: a grant and the reads under it are a record
the customer keeps seeing after the staff member left, and deleting an account or a member
(services.account_deletion, services.members) must not be blocked by them. A staff row whose
user is gone grants nothing (every check joins users)."""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, String, Table, Text

from sealflow.db.tables import ID, DateTime, metadata

# The operator's list of platform staff, in the cell of each staff member's own user row.
platform_staff = Table(
    "platform_staff",
    metadata,
    Column("user_id", String(ID), primary_key=True),
    Column("account_id", String(ID), nullable=False),  # the staff member's own account
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("added_by", String(64), nullable=False),  # "operator:cli"
)

# A grant lives in the cell of the customer account it opens; its id is `<region>_<uuid>` so
# a request finds that cell without a directory (as tokens and sessions do).
staff_grants = Table(
    "staff_grants",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("account_id", String(ID), nullable=False, index=True),
    Column("staff_user_id", String(ID), nullable=False, index=True),
    Column("staff_region", String(8), nullable=False),
    Column("staff_account_id", String(ID), nullable=False),
    Column("justification", Text, nullable=False),  # customer
    Column("status", String(16), nullable=False),  # pending | active | denied | revoked
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),  # approved or denied
    Column("decided_by", String(ID)),  # the owner's user id
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_by", String(80)),  # "user:<id>" or "staff:<id>"
)

# Each request made under a grant, written with its audit record before the data is answered.
staff_grant_reads = Table(
    "staff_grant_reads",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("grant_id", String(64), nullable=False),
    Column("account_id", String(ID), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("method", String(8), nullable=False),
    Column("route", String(200), nullable=False),  # the route's template
    Column("path", String(500), nullable=False),  # the path asked (ids, never a query)
    Index("ix_staff_grant_reads_grant_at", "grant_id", "at"),
)
