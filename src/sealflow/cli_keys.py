"""`sealflow keys ...`: KEK rotation and retirement, data-key rotation with re-encryption, and
key status (S4). Thin: parse, call services.keys, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sealflow.regions.cells import Cells

keys_app = typer.Typer(help="Encryption keys: rotation, retirement and status (operator commands).",
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
    batch_size: Annotated[int, typer.Option(min=1, help="Rows re-encrypted per batch")] = 100,
    drop_old: Annotated[
        bool, typer.Option("--drop-old/--keep-old", help="Delete the older data keys at the end")
    ] = True,
) -> None:
    """Add a new primary data key to an account's keyset, re-encrypt every record of the
    account under it (online, in batches), then delete the older keys. Interrupted, run it
    again: it finishes that rotation first (no new key)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sealflow.services import keys
    from sealflow.services.accounts import find_account

    cells = _cells()
    try:
        found = find_account(cells, account)
        with Progress(
            TextColumn("re-encrypting records"), BarColumn(), MofNCompleteColumn(),
            transient=False,
        ) as progress:
            task = progress.add_task("reencrypt", total=None)

            def on_batch(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            def on_wait(seconds: float) -> None:
                progress.console.print(
                    f"waiting {seconds:.1f} s: running servers may still seal with the older "
                    "key until their key cache expires (keys.cache_ttl_s)"
                )

            result = keys.rotate_account_data(
                cells[found.region], found.id, drop_old=drop_old, batch_size=batch_size,
                on_batch=on_batch, on_wait=on_wait,
            )
    finally:
        cells.dispose()
    for place in result.unreadable:
        typer.echo(f"warning: {place} does not decrypt (altered or moved); left as it was",
                   err=True)
    what = "resumed: finished the rotation to" if result.resumed else "new primary"
    kept = (f"removed older data key(s) {', '.join(map(str, result.removed))}" if result.removed
            else "no older data key removed" if drop_old else "older data keys kept")
    typer.echo(f"account {found.id}: {what} data key {result.key_id}; "
               f"{result.reencrypted} record(s) re-encrypted; {kept}")


@keys_app.command("retire")
def keys_retire(
    region: Annotated[str, typer.Option(help="Region whose key-encryption key versions to retire")],
    version: Annotated[int, typer.Option(min=1, help="Retire this KEK version and older ones")],
) -> None:
    """Retire KEK versions up to VERSION: keysets wrapped under them (an old copy of the key
    store) no longer unwrap. Refused while any keyset is still wrapped under one of them
    (finish `keys rotate` first) and for the current version."""
    from sealflow.cli_common import _fail
    from sealflow.services import keys
    from sealflow.vault.errors import KeyVersionError

    cells = _cells()
    try:
        if region not in cells:
            _fail(f"unknown region {region}; served: {', '.join(cells)}")
        try:
            provider = keys.retire_kek(cells[region], version)
        except KeyVersionError as err:
            _fail(err.message)
    finally:
        cells.dispose()
    typer.echo(f"region {region}: KEK versions up to {version} retired "
               f"(current {provider.get('version')})")


@keys_app.command("status")
def keys_status(
    region: Annotated[list[str] | None, typer.Option(help="Regions (default all)")] = None,
    account: Annotated[
        str | None, typer.Option(help="Only this account: its records and data keys")
    ] = None,
) -> None:
    """Per region: the KEK version, keysets per KEK version, shredded accounts and sealed
    records per data key (with --account: that account's records and its data keys)."""
    from sealflow.cli_common import _fail, _print_json
    from sealflow.services import keys
    from sealflow.services.accounts import find_account

    cells = _cells()
    try:
        if account is not None:
            found = find_account(cells, account)
            _print_json([keys.status(cells[found.region], found.id)])
            return
        unknown = [r for r in region or [] if r not in cells]
        if unknown:
            _fail(f"unknown region(s) {', '.join(unknown)}; served: {', '.join(cells)}")
        _print_json([keys.status(cells[r]) for r in (region or list(cells))])
    finally:
        cells.dispose()
