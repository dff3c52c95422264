"""Data subject requests (D5): the tables.
Kept apart from db/tables.py for size; imported at its end so `metadata` is whole.

A request names its subject by member id only (`user_id`, an opaque uuid): no e-mail, no
name, not even the e-mail's lookup hash, so once the person is erased the request record
(kept as proof that the request was handled, and when) maps nothing back to them. `outcome`
is JSON in clear: counts per table and a rejection reason code, nothing personal.

No foreign key to accounts (like sso_identities): account deletion removes rows table by table
and must be able to remove this one in its own batch (services.account_deletion lists it)."""

from __future__ import annotations

from sqlalchemy import Column, Index, String, Table, Text

from sealflow.db.tables import ID, DateTime, metadata

subject_requests = Table(
    "subject_requests",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("account_id", String(ID), nullable=False),
    Column("kind", String(16), nullable=False),  # export | erasure
    Column("law", String(8), nullable=False),  # gdpr | ccpa
    Column("user_id", String(ID), nullable=False),  # the subject (a member id)
    Column("status", String(16), nullable=False),  # received | in_progress | completed | rejected
    # Who entered it: "user:<id>", "token:<id>" or "operator:cli" (an audit Actor).
    Column("requested_by", String(80), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("due_at", DateTime(timezone=True), nullable=False),  # received_at + the law's days
    Column("completed_at", DateTime(timezone=True)),  # completed or rejected
    Column("outcome", Text),  # JSON in clear: counts, a reason code; nothing personal
    Index("ix_subject_requests_account_status", "account_id", "status"),
    Index("ix_subject_requests_user_id", "user_id"),
)
