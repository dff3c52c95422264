"""`sealflow keys ...`: KEK rotation, data-key rotation and key status (S4). Thin: parse,
call services.keys, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sealflow.regions.cells import Cells

keys_app = typer.Typer(help="Encryption keys: rotation and status (operator commands).",
                       no_args_is_help=True)


def _cells() -> Cells:
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.cli_common import _settings

    cells = build_cells(_settings())
    migrate_all(cells)  # idempotent: the key store may not exist yet
    return cells


@keys_app.command("rotate")
def keys_rotate(
    region: Annotated[str, typer.Option(help="Region whose key-encryption key to rotate")],
    batch_size: Annotated[int, typer.Option(min=1, help="Keysets rewrapped per batch")] = 100,
) -> None:
    """Make a new KEK version and rewrap every account keyset under it, online. Interrupted,
    run it again: it finishes that rotation first (no new version)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sealflow.cli_common import _fail
    from sealflow.services import keys

    cells = _cells()
    try:
        if region not in cells:
            _fail(f"unknown region {region}; served: {', '.join(cells)}")
        with Progress(
            TextColumn("rewrapping keysets"), BarColumn(), MofNCompleteColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task("rewrap", total=None)

            def on_batch(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = keys.rotate_kek(cells[region], batch_size=batch_size, on_batch=on_batch)
    finally:
        cells.dispose()
    what = "resumed: finished the rotation to" if result.resumed else "rotated to"
    typer.echo(f"region {region}: {what} KEK version {result.version}; "
               f"{result.rewrapped} keyset(s) rewrapped")


@keys_app.command("rotate-data")
def keys_rotate_data(
    account: Annotated[str, typer.Option(help="Account id")],
) -> None:
    """Add a new primary data key to an account's keyset. New records use it; older records
    keep decrypting with their own key (re-encrypting them in batches is not done yet)."""
    from sealflow.services import keys
    from sealflow.services.accounts import find_account

    cells = _cells()
    try:
        found = find_account(cells, account)
        key_id = keys.rotate_data_key(cells[found.region].vault, found.id)
    finally:
        cells.dispose()
    typer.echo(f"account {found.id}: new primary data key {key_id}; older records keep their "
               "key until re-encrypted")


@keys_app.command("status")
def keys_status(
    region: Annotated[list[str] | None, typer.Option(help="Regions (default all)")] = None,
) -> None:
    """Per region: the KEK version, keysets per KEK version, shredded accounts and sealed
    records per data key."""
    from sealflow.cli_common import _fail, _print_json
    from sealflow.services import keys

    cells = _cells()
    try:
        unknown = [r for r in region or [] if r not in cells]
        if unknown:
            _fail(f"unknown region(s) {', '.join(unknown)}; served: {', '.join(cells)}")
        _print_json([keys.status(cells[r]) for r in (region or list(cells))])
    finally:
        cells.dispose()
