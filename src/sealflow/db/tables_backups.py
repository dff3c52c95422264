"""Encrypted backups (D6): no table, by design. The backup files describe themselves (their
headers: services.backups.list_backups), and every backup taken, restored or
deleted is in the region's audit trail. A table in the cell database could not describe the
backups anyway: a restore replaces it with the backup's older copy."""

from __future__ import annotations

from sealflow.db.tables import metadata  # noqa: F401
