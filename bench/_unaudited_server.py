"""BENCH ONLY: runs the `sealflow` CLI with the audit trail's `record` replaced by a no-op, so
that bench/webhook.py --compare-audit can measure what auditing costs. Never use it to serve
anything: the actions it performs leave no audit record (A2 broken on purpose).

    python bench/_unaudited_server.py --data-dir D --port P serve

sealflow itself has no "audit off" setting, on purpose: this launcher swaps
sealflow.audit.trail.AuditTrail.record in this process before running the normal CLI. Every
service records through a cell's trail (`cell.audit.record(conn, ...)`, a method looked up
on the class at each call), so replacing it on the class reaches them all; the action's own
write transaction still opens and commits as usual, only the audit rows are not written.
"""

from __future__ import annotations

import sys
from typing import Any

from sealflow.audit.trail import AuditTrail


def no_record(self: AuditTrail, conn: Any, **event: Any) -> int:
    return 0  # no seq: nothing was appended


def patch() -> None:
    AuditTrail.record = no_record  # type: ignore[method-assign]
    # The modules the server runs, imported now: none may hold its own copy of the method.
    import sealflow.api.app
    import sealflow.bootstrap  # noqa: F401
    from sealflow.audit import trail

    if trail.AuditTrail.record is not no_record:
        raise SystemExit("bench: the no-op did not reach the audit trail")


def main() -> None:
    patch()
    print("bench: audit trail record() replaced by a no-op", file=sys.stderr)
    from sealflow.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
