"""The job queue interface. The embedded implementation (embedded.py) runs a worker pool in
the server process over the cell databases; scale-out (issue 8) puts procrastinate behind
the same interface. In both, an execution row in status `queued` is the job: creating the
execution and enqueuing it are one transaction."""

from __future__ import annotations

from typing import Protocol


class JobQueue(Protocol):
    def submit(self, region: str, execution_id: str) -> None:
        """Called after the creating transaction committed: wake a worker for it."""

    def reserve(self) -> str | None:
        """Reserve a free worker slot in this process for direct dispatch: returns the
        lease owner to insert the execution as already claimed, or None when full."""

    def start_reserved(self, region: str, execution_id: str) -> None:
        """Run an execution inserted as claimed with the owner `reserve()` returned."""

    def release(self) -> None:
        """Give back a reserved slot whose execution was not created."""

    async def start(self) -> None: ...

    async def stop(self) -> None:
        """Drain: in-flight executions finish within the grace period or are handed back."""
