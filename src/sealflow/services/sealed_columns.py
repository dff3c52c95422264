"""Every sealed column of a cell (db.sealed), with the row id its ciphertexts are bound to:
the registry `keys status` counts and `keys rotate-data` re-encrypts. A new table with sealed
columns must be listed here, or rotate-data cannot remove old data keys safely (its values
would be lost with them); a unit test compares this list with the `# customer` / `# secret`
markers of db/tables.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from sealflow.db.sealed import step_row_id
from sealflow.db.tables import (
    authentications,
    executions,
    invitations,
    oauth_states,
    sso_providers,
    sso_states,
    step_runs,
    storage_entries,
    storage_items,
    storage_lookup_keys,
    users,
    workflow_versions,
    workflows,
)
from sealflow.db.tables_monitoring import audit_sinks
from sealflow.db.tables_staff import staff_grants
from sealflow.services.workflows import _version_row_id


@dataclass(frozen=True)
class SealedTable:
    """A table with sealed columns (db.sealed) and the row id its ciphertexts are bound to."""

    table: Table
    columns: tuple[str, ...]
    row_id: Callable[[Any], str]  # from a row holding `reads`
    reads: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.table.primary_key.columns) != 1:  # the compare-and-set names one row
            raise ValueError(f"{self.table.name}: one primary-key column expected")

    @property
    def key(self) -> Any:
        return next(iter(self.table.primary_key.columns))


def _by_id(row: Any) -> str:
    return str(row.id)


SEALED_COLUMNS: tuple[SealedTable, ...] = (
    SealedTable(workflows, ("webhook_token", "webhook_secret"), _by_id, ("id",)),
    SealedTable(
        workflow_versions,
        ("document",),
        lambda r: _version_row_id(r.workflow_id, r.version),
        ("workflow_id", "version"),
    ),
    SealedTable(executions, ("trigger_payload", "response", "result", "error"), _by_id, ("id",)),
    SealedTable(
        step_runs,
        ("input", "output", "error", "logs"),
        lambda r: step_row_id(r.execution_id, r.path),
        ("execution_id", "path"),
    ),
    SealedTable(authentications, ("config", "secret"), _by_id, ("id",)),
    SealedTable(oauth_states, ("verifier",), lambda r: str(r.state_hash), ("state_hash",)),
    SealedTable(users, ("email", "name", "totp_secret"), _by_id, ("id",)),
    SealedTable(invitations, ("email",), _by_id, ("id",)),
    SealedTable(
        storage_lookup_keys, ("secret",), lambda r: str(r.account_id), ("account_id",)
    ),
    SealedTable(storage_entries, ("key_name", "value"), _by_id, ("id",)),
    SealedTable(storage_items, ("value",), _by_id, ("id",)),
    SealedTable(sso_providers, ("client_secret",), lambda r: str(r.account_id), ("account_id",)),
    SealedTable(sso_states, ("verifier", "nonce"), lambda r: str(r.state_hash), ("state_hash",)),
    SealedTable(audit_sinks, ("config", "secret"), _by_id, ("id",)),
    SealedTable(staff_grants, ("justification",), _by_id, ("id",)),
)
