"""Audit sinks (SIEM) and alerts (A4): the tables.
Kept apart from db/tables.py for size; imported at its end so `metadata` is whole."""

from __future__ import annotations

from sqlalchemy import Column, Integer, String, Table, Text, UniqueConstraint

from sealflow.db.tables import ID, DateTime, metadata

# A customer's stream of its account's audit trail to its SIEM (siem/). `config` is the
# destination (JSON: a URL, or host and port), not secret; `secret` is the webhook's HMAC key,
# sealed (db/sealed.py; services/sealed_columns.py lists it). The cursor is the seq of the
# last audit record delivered: it advances only after the receiver accepted the batch
# (at-least-once), so a receiver that was down catches up from there.
audit_sinks = Table(
    "audit_sinks",
    metadata,
    Column("id", String(ID), primary_key=True),
    Column("account_id", String(ID), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("kind", String(16), nullable=False),  # "syslog" | "webhook"
    Column("config", Text, nullable=False),  # secret: the sealed destination (URL or host)
    Column("secret", Text),  # secret: the sealed HMAC key of a webhook sink
    Column("fingerprint", String(80)),
    Column("cursor_seq", Integer, nullable=False, default=0),
    Column("delivered", Integer, nullable=False, default=0),
    Column("failures", Integer, nullable=False, default=0),  # consecutive
    Column("next_attempt_at", DateTime(timezone=True)),
    Column("last_success_at", DateTime(timezone=True)),
    Column("last_error", String(300)),  # a code and a short reason, never data
    Column("created_by", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("account_id", "name", name="uq_audit_sinks_account_name"),
)

# When each alert (rule, key) last fired: one alert per rule and key per window, across the
# nodes sharing this cell's database (compare-and-set on fired_at).
alert_state = Table(
    "alert_state",
    metadata,
    Column("rule", String(64), primary_key=True),
    Column("key", String(300), primary_key=True),  # ids and pseudonyms only
    Column("fired_at", DateTime(timezone=True), nullable=False),
    Column("fired", Integer, nullable=False, default=1),
)

# Where the alert rules stopped reading the audit trail (by seq): the incremental chain check
# keeps the chain hash of the last record it verified.
monitor_cursors = Table(
    "monitor_cursors",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64)),
    Column("at", DateTime(timezone=True), nullable=False),
)
