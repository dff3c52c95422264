"""`sealflow retention ...` and `sealflow purge`: per-account retention policies and the
purge of expired data (D3). Thin: parse, call services.retention / services.purge, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from datetime import date, timedelta
    from pathlib import Path

    from sealflow.audit.records import Actor
    from sealflow.clock import Clock
    from sealflow.regions.cells import Cell, Cells
    from sealflow.services.purge import Counts, LogFiles, PurgeResult
    from sealflow.services.purge_batches import Backlog

retention_app = typer.Typer(
    help="Per-account retention of execution data and debug logs (operator commands).",
    no_args_is_help=True)


def _cells() -> Cells:
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.cli_common import _settings

    cells = build_cells(_settings())
    migrate_all(cells)
    return cells


def _duration(flag: str, text: str | None) -> timedelta | None:
    from sealflow.cli_common import _fail
    from sealflow.services.retention import parse_duration

    if text is None:
        return None
    value = parse_duration(text)
    if value is None:
        _fail(f"{flag}: {text!r} is not a duration in whole days or hours (e.g. 10d, 36h, "
              "1d12h)")
    return value


@retention_app.command("set")
def retention_set(
    account: Annotated[str, typer.Option(help="Account id")],
    executions: Annotated[str | None, typer.Option(
        help="Raw execution data kept after an execution finishes (24h to 10d)")] = None,
    logs: Annotated[str | None, typer.Option(
        help="Step debug logs kept after an execution finishes (24h to 30d)")] = None,
) -> None:
    """Shorten (or restore) how long an account's execution data and debug logs are kept.
    A lifetime not given keeps its current value."""
    from sealflow.audit.records import Actor, ActorKind
    from sealflow.cli_common import _fail
    from sealflow.clock import SystemClock
    from sealflow.core.errors import InvalidInput, NotFound
    from sealflow.services import retention
    from sealflow.services.accounts import find_account

    if executions is None and logs is None:
        _fail("give --executions and/or --logs")
    data, debug = _duration("--executions", executions), _duration("--logs", logs)
    cells = _cells()
    try:
        found = find_account(cells, account)
        policy = retention.set_policy(cells[found.region], SystemClock(), found.id,
                                      actor=Actor(ActorKind.OPERATOR, "cli"),
                                      executions=data, logs=debug)
    except InvalidInput as err:
        _fail("; ".join(f"--{i.path.rsplit('.', 1)[-1]}: {i.message}" for i in err.issues))
    except NotFound as err:
        _fail(str(err))
    finally:
        cells.dispose()
    shown = policy.to_settings()
    typer.echo(f"account {found.id}: execution data kept {shown['executions']}, "
               f"debug logs kept {shown['logs']}")


@retention_app.command("show")
def retention_show(
    account: Annotated[str | None, typer.Option(help="Account id (default: every account)")
                       ] = None,
) -> None:
    """The retention policy in force: of one account, or of every account served here."""
    from sealflow.cli_common import _fail
    from sealflow.core.errors import NotFound
    from sealflow.services import retention
    from sealflow.services.accounts import find_account

    cells = _cells()
    try:
        if account is not None:
            try:
                found = find_account(cells, account)
            except NotFound as err:
                _fail(str(err))
            rows = [(found.region, found.id, retention.show(cells[found.region], found.id))]
        else:
            rows = []
            for region in cells:
                with cells[region].read() as conn:
                    rows += [(region, a, p) for a, p in retention.policies(conn).items()]
    finally:
        cells.dispose()
    typer.echo(f"{'region':<7} {'account':<36}  {'executions':>10}  {'logs':>6}")
    for region, account_id, policy in rows:
        shown = policy.to_settings()
        typer.echo(f"{region:<7} {account_id:<36}  {shown['executions']:>10}  "
                   f"{shown['logs']:>6}")


def purge(
    region: Annotated[str | None, typer.Option(help="Region to purge (default: all)")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only list what would go (per account and kind, oldest first)")
    ] = False,
    compact: Annotated[bool, typer.Option(
        "--compact", help="SQLite: turn on incremental auto-vacuum and rewrite the file "
                          "(for a file made without it; stop the server first)")] = False,
) -> None:
    """Purge now what the retention policies say has expired: execution data, debug logs,
    server log files older than 30 days. Safe while serving (small batches); interrupted,
    run it again."""
    from sealflow.audit.records import Actor, ActorKind
    from sealflow.cli_common import _fail, _settings
    from sealflow.clock import SystemClock
    from sealflow.services import purge as purging

    settings = _settings()
    cells = _cells()
    try:
        if region is not None and region not in cells:
            _fail(f"unknown region {region}; served: {', '.join(cells)}")
        regions = [region] if region else list(cells)
        clock = SystemClock()
        files_region = next(iter(cells))
        files = purging.LogFiles(settings.log_dir(), settings.log_files.keep_days)
        for name in regions:
            cell = cells[name]
            if compact:
                typer.echo(f"region {name}: {purging.compact(cell)}")
                continue
            own_files = files if name == files_region else None
            if dry_run:
                _print_backlog(name, purging.backlog(cell, clock),
                               own_files.expired(clock.now()) if own_files else [])
                continue
            _purge_with_progress(cell, clock, own_files,
                                 Actor(ActorKind.OPERATOR, "cli"))
    finally:
        cells.dispose()


def _print_backlog(region: str, rows: list[Backlog], files: list[tuple[Path, date]]) -> None:
    total = sum(r.executions for r in rows)
    typer.echo(f"region {region}: {total} execution(s) due, {len(files)} log file(s) due "
               "(dry run: nothing deleted)")
    if rows:
        typer.echo(f"  {'account':<36}  {'kind':<14} {'executions':>10} {'step runs':>10}  "
                   "oldest finished")
    for r in rows:
        oldest = r.oldest.strftime("%Y-%m-%d %H:%M") if r.oldest else "-"
        typer.echo(f"  {r.account_id:<36}  {r.kind:<14} {r.executions:>10} "
                   f"{r.step_runs:>10}  {oldest}")
    for path, day in files:
        typer.echo(f"  log file {path.name} (day {day.isoformat()})")


def _purge_with_progress(cell: Cell, clock: Clock, files: LogFiles | None,
                         actor: Actor) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from sealflow.services import purge as purging

    due = sum(r.executions for r in purging.backlog(cell, clock))
    if not due:  # log files only, if any: no bar
        result = purging.purge_cell(cell, clock, trigger="cli", actor=actor, log_files=files,
                                    checkpoint="truncate")
        _report(cell.region, result)
        return
    with Progress(TextColumn(f"purging {cell.region}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[detail]}"), transient=False) as progress:
        task = progress.add_task("purge", total=due or None, detail="")

        def on_batch(counts: Counts) -> None:
            handled = (counts.executions_deleted + counts.execution_data_cleared
                       + counts.step_logs_cleared)
            progress.update(task, completed=min(handled, due) if due else handled,
                            detail=f"{counts.step_runs_deleted} step runs deleted")

        result = purging.purge_cell(cell, clock, trigger="cli", actor=actor, log_files=files,
                                    on_batch=on_batch, checkpoint="truncate")
    _report(cell.region, result)


def _report(region: str, result: PurgeResult) -> None:
    c = result.counts
    if result.run_id is None:
        typer.echo(f"region {region}: nothing due")
        return
    typer.echo(
        f"region {region}: run {result.run_id}: {c.executions_deleted} execution(s) and "
        f"{c.step_runs_deleted} step run(s) deleted; raw data cleared from "
        f"{c.execution_data_cleared} execution(s); debug logs cleared from "
        f"{c.step_logs_cleared} step run(s); {c.log_files_deleted} log file(s) deleted; "
        f"{c.pages_freed} page(s) given back to the file system")
