"""`sealflow backup ...`: take, list, verify and restore encrypted backups of the region
databases (D6). Thin: parse, call services.backups, print; progress bars on stderr."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from sealflow.cli_common import _fail, _print_json, _settings

if TYPE_CHECKING:
    from sealflow.regions.cells import Cells
    from sealflow.services.backups import Progress

backup_app = typer.Typer(help="Encrypted backups of the region databases (operator commands).",
                         no_args_is_help=True)

_REGION = typer.Option(help="Region (default: every region served)")


@contextmanager
def _cells() -> Iterator[Cells]:
    from sealflow.bootstrap import build_cells
    from sealflow.core.errors import SealflowError

    try:
        cells = build_cells(_settings())
    except (SealflowError, OSError) as err:
        _fail(str(err))
    try:
        yield cells
    except SealflowError as err:  # a bad file, a wrong key, a database in use: one line
        _fail(err.message)
    except OSError as err:
        _fail(f"{err.filename or 'backup'}: {err.strerror or err}")
    finally:
        cells.dispose()


@contextmanager
def _progress() -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    with Progress(TextColumn("{task.description:>8}"), BarColumn(), DownloadColumn(),
                  console=Console(stderr=True), transient=False) as bar:
        tasks: dict[str, object] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total or None)
            bar.update(tasks[phase], completed=done, total=total or None)  # type: ignore[arg-type]

        yield update


def _regions(cells: Cells, region: str | None) -> list[str]:
    if region is None:
        return list(cells)
    if region not in cells:
        _fail(f"--region: unknown region {region}; served: {', '.join(cells)}")
    return [region]


@backup_app.command("create")
def backup_create(region: Annotated[str | None, _REGION] = None) -> None:
    """Take an encrypted backup of each region's database now."""
    from sealflow.audit.records import Actor, ActorKind
    from sealflow.clock import SystemClock
    from sealflow.services import backups

    settings = _settings()
    with _cells() as cells:
        for r in _regions(cells, region):
            with _progress() as progress:
                info = backups.create_backup(settings, cells[r], SystemClock(),
                                             actor=Actor(ActorKind.OPERATOR, "cli"),
                                             progress=progress)
            typer.echo(f"region {r}: {info.path} ({info.file_bytes} bytes, database "
                       f"{info.plaintext_bytes} bytes, sha256 {info.sha256})")


@backup_app.command("list")
def backup_list(region: Annotated[str | None, _REGION] = None) -> None:
    """The backups kept, oldest first (read from their headers; nothing decrypted)."""
    from sealflow.services import backups

    settings = _settings()
    regions = [region] if region else list(settings.regions)
    if region is not None and region not in settings.regions:
        _fail(f"--region: unknown region {region}; served: {', '.join(settings.regions)}")
    _print_json([
        {"region": b.region, "path": str(b.path), "created_at": b.created_at,
         "file_bytes": b.file_bytes, "database_bytes": b.plaintext_bytes, "source": b.source,
         "sha256": b.sha256, **({"problem": b.problem} if b.problem else {})}
        for r in regions for b in backups.list_backups(settings, r)
    ])


@backup_app.command("verify")
def backup_verify(
    file: Annotated[Path, typer.Argument(help="A .sfbak file")],
    region: Annotated[str | None, typer.Option(help="Expected region")] = None,
) -> None:
    """Decrypt and check every chunk and the SHA-256 of a backup, restoring nothing."""
    from sealflow.core.errors import SealflowError
    from sealflow.services import backups

    settings = _settings()
    try:
        with _progress() as progress:
            header = backups.verify_backup(settings, file, region=region, progress=progress)
    except SealflowError as err:
        _fail(f"{file.name}: {err.message}")
    typer.echo(f"{file.name}: ok (region {header.region}, {header.source}, taken "
               f"{header.created_at}, {header.chunks} chunk(s), sha256 {header.sha256})")


@backup_app.command("restore")
def backup_restore(
    file: Annotated[Path, typer.Argument(help="A .sfbak file")],
    region: Annotated[str | None, typer.Option(help="Region to restore (default: the "
                                               "backup's own; another one is refused)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Confirm: the region's database is "
                                      "replaced by the backup")] = False,
) -> None:
    """Replace a region's database with a backup: verified first (a damaged, truncated,
    foreign or wrong-key file is refused and nothing changes), then migrated; shredded
    accounts stay unreadable. Stop `sealflow serve` and the region's workers first."""
    if not yes:
        _fail("restoring replaces the region's database with the backup; add --yes to confirm")
    from sealflow import backup_format
    from sealflow.audit.records import Actor, ActorKind
    from sealflow.clock import SystemClock
    from sealflow.services import backups

    settings = _settings()
    with _cells() as cells:
        if region is None:  # the backup's own region, from its header
            try:
                with file.open("rb") as stream:
                    region = backup_format.read_header(stream)[0].region
            except OSError as err:
                _fail(f"cannot read {file}: {err.strerror}")
            except backup_format.BackupError as err:
                _fail(f"{file.name}: {err.message}")
        target = _regions(cells, region)[0]
        try:
            with _progress() as progress:
                result = backups.restore_backup(settings, cells[target], SystemClock(), file,
                                                actor=Actor(ActorKind.OPERATOR, "cli"),
                                                progress=progress)
        except backup_format.BackupError as err:
            _fail(f"{file.name}: {err.message}; the database was not changed")
    typer.echo(f"region {target}: restored {file.name} (taken "
               f"{result.backup_created_at.isoformat()})")
    if result.shredded_accounts:
        typer.echo(f"{len(result.shredded_accounts)} account(s) in the backup were deleted "
                   "since: their rows are back but their data stays unreadable; remove them "
                   "again with `sealflow accounts delete --account ID --yes`: "
                   + ", ".join(result.shredded_accounts))
