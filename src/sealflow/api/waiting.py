"""Waiting for an execution from a request handler (run with wait, webhooks that wait)."""

from __future__ import annotations

from typing import Any

from sealflow.bootstrap import Platform
from sealflow.core.executions import TERMINAL
from sealflow.db.sealed import open_
from sealflow.engine import records
from sealflow.services.accounts import Caller


async def wait_for_end(p: Platform, who: Caller, execution_id: str, timeout: float) -> bool:
    """True when the execution ended within `timeout` seconds."""
    cell = p.cells[who.region]

    def poll() -> Any:
        with cell.read() as conn:
            row = records.load_execution(conn, execution_id)
        # A row gone (its account deleted meanwhile) has ended too: the caller then reads
        # "not found" instead of waiting out its timeout.
        return True if row is None or row.status in TERMINAL else None

    return await p.hub.wait(f"done:{execution_id}", timeout, poll) is not None


async def wait_for_response(
    p: Platform, region: str, execution_id: str, timeout: float, *, local: bool = False
) -> Any:
    """The webhook answer ({status, headers, body}) of an execution, or None on timeout."""
    cell = p.cells[region]

    def poll() -> Any:
        with cell.read() as conn:
            row = records.load_execution(conn, execution_id)
        if row is None or not row.response:
            return None
        return open_(cell.vault, row.account_id, "executions", row.id, "response", row.response)

    return await p.hub.wait(execution_id, timeout, poll, poll_first=not local)
