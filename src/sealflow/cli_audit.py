"""`sealflow audit ...`: verify the tamper-evident audit log, prove inclusion and consistency,
sign a checkpoint, show the signing key. Thin: parse, call sealflow.audit, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine

    from sealflow.config import Settings

audit_app = typer.Typer(help="The tamper-evident audit log (operator commands).",
                        no_args_is_help=True)

RegionOpt = Annotated[str | None, typer.Option(help="Region (default: the only or default one)")]


def _region(settings: Settings, region: str | None) -> str:
    from sealflow.cli_common import _fail

    chosen = region or settings.default_region
    if chosen not in settings.regions:
        _fail(f"unknown region {chosen}; served: {', '.join(settings.regions)}")
    return chosen


def _engine(settings: Settings, region: str) -> Engine:
    from sealflow.db.engine import make_engine
    from sealflow.db.migrate import upgrade

    engine = make_engine(settings.database_url(region))
    upgrade(engine)  # idempotent; a fresh region has an empty, valid log
    return engine


@audit_app.command("verify")
def audit_verify(
    region: Annotated[str | None, typer.Option(help="Region to check (default: all)")] = None,
    public_key: Annotated[str | None, typer.Option(
        help="Base64 Ed25519 public key to check signatures with (default: the key file's; "
             "pin it from `sealflow audit key` for an independent check)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON")] = False,
) -> None:
    """Check chain, tree and checkpoint signatures; exit 1 naming the first bad record."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sealflow.audit.signing import AuditKeyError, Signer, Verifier, key_path
    from sealflow.audit.verify import report_json, verify
    from sealflow.cli_common import _fail, _settings

    settings = _settings()
    regions = [_region(settings, region)] if region else list(settings.regions)
    failed = False
    for name in regions:
        try:
            verifier = (Verifier.from_b64(public_key) if public_key
                        else Signer.load(key_path(settings.data_dir, name)).verifier)
        except AuditKeyError as err:
            if public_key:
                _fail(str(err))
            verifier = None
            typer.echo(f"warning: region {name}: {err}; checkpoint signatures not checked",
                       err=True)
        engine = _engine(settings, name)
        try:
            with Progress(TextColumn(f"verifying {name}"), BarColumn(), MofNCompleteColumn(),
                          console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task("verify", total=None)

                def on_progress(done: int, total: int) -> None:
                    progress.update(task, completed=done, total=total)  # noqa: B023

                with engine.connect() as conn:
                    report = verify(conn, name, verifier, on_progress)
        finally:
            engine.dispose()
        if as_json:
            typer.echo(report_json(report))
        elif report.ok:
            typer.echo(f"region {name}: ok, {report.records} records, {report.checkpoints} "
                       f"checkpoints, {report.signed_size} covered by a signed checkpoint")
        else:
            typer.echo(f"region {name}: TAMPERED ({report.records} records read)")
            for problem in report.problems:
                typer.echo(f"  {problem}")
        failed = failed or not report.ok
    if failed:
        raise typer.Exit(1)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Option(min=1, help="The record to prove")],
    tree_size: Annotated[int | None, typer.Option(
        help="Tree size (default: the last checkpoint's)")] = None,
    region: RegionOpt = None,
) -> None:
    """Print an RFC 9162 inclusion proof of a record (JSON)."""
    from sealflow.audit import log
    from sealflow.cli_common import _fail, _print_json, _settings

    settings = _settings()
    name = _region(settings, region)
    engine = _engine(settings, name)
    try:
        with engine.connect() as conn:
            proof = log.inclusion(conn, seq, tree_size)
            proof["checkpoint"] = _checkpoint_for(conn, proof["tree_size"])
    except ValueError as err:
        _fail(str(err))
    finally:
        engine.dispose()
    _print_json({"region": name, **proof})


@audit_app.command("consistency")
def audit_consistency(
    first: Annotated[int, typer.Option("--from", min=0, help="The older tree size")],
    second: Annotated[int | None, typer.Option(
        "--to", help="The newer tree size (default: the last checkpoint's)")] = None,
    region: RegionOpt = None,
) -> None:
    """Print an RFC 9162 consistency proof between two tree sizes (JSON)."""
    from sealflow.audit import log
    from sealflow.cli_common import _fail, _print_json, _settings

    settings = _settings()
    name = _region(settings, region)
    engine = _engine(settings, name)
    try:
        with engine.connect() as conn:
            proof = log.consistency(conn, first, second)
            proof["checkpoints"] = [_checkpoint_for(conn, proof["first"]),
                                    _checkpoint_for(conn, proof["second"])]
    except ValueError as err:
        _fail(str(err))
    finally:
        engine.dispose()
    _print_json({"region": name, **proof})


@audit_app.command("checkpoint")
def audit_checkpoint(region: RegionOpt = None) -> None:
    """Sign the current tree head now (the server does so every 60 s or 1,000 records)."""
    from sealflow.audit import log
    from sealflow.audit.signing import Signer, key_path
    from sealflow.cli_common import _print_json, _settings
    from sealflow.clock import SystemClock

    settings = _settings()
    name = _region(settings, region)
    signer = Signer.load(key_path(settings.data_dir, name), create=True)
    engine = _engine(settings, name)
    try:
        with engine.begin() as conn:
            cp = log.checkpoint(conn, name, signer, SystemClock().now())
    finally:
        engine.dispose()
    _print_json({"region": name, "checkpoint": None if cp is None else cp.as_json()})


@audit_app.command("key")
def audit_key(region: RegionOpt = None) -> None:
    """Show the region's checkpoint public key (creating the key pair on first use)."""
    from sealflow.audit.signing import Signer, key_path
    from sealflow.cli_common import _print_json, _settings

    settings = _settings()
    name = _region(settings, region)
    path = key_path(settings.data_dir, name)
    signer = Signer.load(path, create=True)
    _print_json({"region": name, "key_id": signer.key_id, "algorithm": "Ed25519",
                 "public_key": signer.verifier.public_b64(), "file": str(path)})


def _checkpoint_for(conn: Connection, size: int) -> dict[str, object] | None:
    from sealflow.audit import log

    for cp in reversed(log.checkpoints(conn)):
        if cp.tree_size == size:
            return cp.as_json()
    return None
