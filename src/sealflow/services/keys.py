"""Key operations of a cell (S4): rotate the KEK and rewrap every account keyset (online,
resumable), add a data key to an account, count records per key version.

Re-encrypting an account's old records under its new primary data key (`keys rotate-data`
in batches) is not done yet: older data keys stay in the keyset and keep decrypting."""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, select

from sealflow.db.tables import executions, step_runs, workflow_versions, workflows
from sealflow.regions.cells import Cell
from sealflow.vault.errors import KeyVersionError
from sealflow.vault.keystore import RewrapProgress
from sealflow.vault.vault import Vault

# Every sealed column (db.sealed), for the per-data-key counts of `keys status`.
SEALED_COLUMNS: tuple[tuple[Table, tuple[str, ...]], ...] = (
    (workflows, ("webhook_token", "webhook_secret")),
    (workflow_versions, ("document",)),
    (executions, ("trigger_payload", "response", "result", "error")),
    (step_runs, ("input", "output", "error", "logs")),
)


@dataclass(frozen=True)
class KekRotation:
    version: int  # the KEK version every keyset is wrapped under at the end
    resumed: bool  # True: an interrupted rotation was finished, no new version was made
    rewrapped: int


def rotate_kek(
    cell: Cell, *, batch_size: int = 100, on_batch: Callable[[int, int], None] | None = None
) -> KekRotation:
    """Makes a new KEK version and rewraps every keyset under it, batch by batch, online.
    Resumable: when keysets are still behind the current version (an interrupted run), that
    rotation is finished instead and no new version is made. `on_batch(done, total)`."""
    vault = cell.vault
    status = vault.status()
    behind = sum(n for v, n in status.keysets_by_kek_version.items() if v < status.kek_version)
    resumed = behind > 0
    version = status.kek_version if resumed else vault.rotate_kek()
    total = behind if resumed else sum(status.keysets_by_kek_version.values())
    done = stalled = 0
    if on_batch is not None:
        on_batch(done, total)
    while True:
        progress: RewrapProgress = vault.rewrap(batch_size)
        done += progress.rewrapped
        total = max(total, done + progress.remaining)
        if on_batch is not None:
            on_batch(done, total)
        if progress.done:
            break
        stalled = stalled + 1 if progress.rewrapped == 0 else 0  # lost races: try again
        if stalled > 3:
            raise KeyVersionError(
                f"{progress.remaining} keysets of region {cell.region} could not be rewrapped; "
                "run `sealflow keys rotate` again to resume"
            )
    return KekRotation(version=version, resumed=resumed, rewrapped=done)


def rotate_data_key(vault: Vault, account_id: str) -> int:
    """A new primary data key for the account (new records use it; old ones keep theirs)."""
    return vault.rotate_data_key(account_id)


def _key_id(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return Vault.data_key_id(base64.urlsafe_b64decode(text))
    except (binascii.Error, ValueError):
        return None


def status(cell: Cell) -> dict[str, Any]:
    """The KEK version, keysets per KEK version, shredded accounts, and sealed values per data
    key id (a value no data key id can be read from counts as "unknown")."""
    vault_status = cell.vault.status()
    records: Counter[str] = Counter()
    with cell.read() as conn:
        for table, columns in SEALED_COLUMNS:
            query = select(*(table.c[name] for name in columns))
            for row in conn.execute(query):
                for value in row:
                    if value is not None:
                        key_id = _key_id(value)
                        records["unknown" if key_id is None else str(key_id)] += 1
    return {
        "region": cell.region,
        "provider": vault_status.provider,
        "kek_version": vault_status.kek_version,
        "keysets_by_kek_version": {
            str(v): n for v, n in sorted(vault_status.keysets_by_kek_version.items())
        },
        "shredded_accounts": vault_status.shredded_accounts,
        "records_by_data_key": dict(sorted(records.items())),
    }
