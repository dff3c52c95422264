"""BENCH ONLY: runs the `sealflow` CLI with sealing at rest replaced by a pass-through, so that
bench/webhook.py --compare-encryption can measure what encryption costs. Never use it to
serve anything: every customer column is stored as plain JSON (base64 text, the same shape
and codec work as the real seal, minus the vault).

    python bench/_plain_server.py --data-dir D --port P serve

sealflow itself has no "encryption off" setting, on purpose: this launcher swaps
sealflow.db.sealed.seal/open_ in this process before running the normal CLI.
"""

from __future__ import annotations

import base64
import sys
from typing import Any

from sealflow.db import codec, sealed


def plain_seal(vault: Any, account_id: str, table: str, row_id: str, column: str,
               value: Any) -> str:
    return base64.urlsafe_b64encode(codec.dumps_bytes(value)).decode("ascii")


def plain_open(vault: Any, account_id: str, table: str, row_id: str, column: str,
               text: str | None) -> Any:
    return None if text is None else codec.loads(base64.urlsafe_b64decode(text))


def patch() -> None:
    """Replaces seal/open_ in db.sealed and in every sealflow module that imported them by
    name, whatever was imported first; then checks that no module still holds the real ones."""
    real = {id(sealed.seal): plain_seal, id(sealed.open_): plain_open}
    sealed.seal = plain_seal  # type: ignore[assignment]  # later `from ... import` get these
    sealed.open_ = plain_open  # type: ignore[assignment]
    # The modules the server runs, imported now so that the check below sees them.
    import sealflow.api.app
    import sealflow.bootstrap  # noqa: F401

    for name, module in list(sys.modules.items()):
        if not name.startswith("sealflow.") or module is None:
            continue
        for attr, value in list(vars(module).items()):
            swap = real.get(id(value))
            if swap is not None:  # imported before the patch: swap that copy too
                setattr(module, attr, swap)
    from sealflow.engine import records

    if records.seal is not plain_seal:
        raise SystemExit("bench: the pass-through did not reach the engine")


def main() -> None:
    patch()
    print("bench: sealing at rest replaced by a plain pass-through", file=sys.stderr)
    from sealflow.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
