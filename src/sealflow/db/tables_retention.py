"""Retention policies and purge runs (D3): the tables.
Kept apart from db/tables.py for size; imported at its end so `metadata` is whole."""

from __future__ import annotations

from sealflow.db.tables import metadata  # noqa: F401
