"""Customer columns at rest (S6): the one place that turns a JSON value into the sealed text a
`# customer` / `# secret` column holds, and back.

value -> codec JSON bytes -> vault.encrypt (AAD: region, account, table, row id, column) ->
base64url text (fits the existing Text columns). A ciphertext moved to another row, column,
account or region, or altered, does not open: `open_` raises DataUnreadable; for an account
whose keys were shredded (S7) it raises DataDestroyed. Both are clear API errors (409 / 410),
never a 500.

Row ids: executions and workflows bind their string id. step_runs rows get an autoincrement
id only at insert, so their ciphertexts bind `<execution_id>/<path>` instead (unique together:
uq_step_runs_execution_path); `step_row_id` builds it.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from sealflow.core.errors import SealflowError
from sealflow.db import codec
from sealflow.vault.errors import AccountShredded, DecryptionFailed
from sealflow.vault.vault import Vault


class DataUnreadable(SealflowError):
    """A stored value did not decrypt: altered, or moved from another row or account."""

    code = "data_unreadable"
    retryable = False


class DataDestroyed(SealflowError):
    """The account's keys were shredded (S7): its data can never be read again."""

    code = "data_destroyed"
    retryable = False


def step_row_id(execution_id: str, path: str) -> str:
    """The row id bound into step_runs ciphertexts (the autoincrement id is unknown before
    insert; (execution_id, path) is unique)."""
    return f"{execution_id}/{path}"


def seal(vault: Vault, account_id: str, table: str, row_id: str, column: str, value: Any) -> str:
    """The sealed text of a JSON value (None is sealed too: callers decide what stays NULL)."""
    try:
        raw = vault.encrypt(account_id, table, row_id, column, codec.dumps_bytes(value))
    except AccountShredded:
        raise DataDestroyed(f"the data of account {account_id} was destroyed") from None
    return base64.urlsafe_b64encode(raw).decode("ascii")


def open_(
    vault: Vault, account_id: str, table: str, row_id: str, column: str, text: str | None
) -> Any:
    """The JSON value a sealed column holds (None for NULL)."""
    if text is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text)
    except (binascii.Error, ValueError):
        raw = b""
    try:
        plain = vault.decrypt(account_id, table, row_id, column, raw)
    except AccountShredded:
        raise DataDestroyed(f"the data of account {account_id} was destroyed") from None
    except DecryptionFailed:
        raise DataUnreadable(
            f"{table}.{column} of {row_id} could not be decrypted (altered, or not its own)"
        ) from None
    return codec.loads(plain)
