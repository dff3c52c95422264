"""The `sealflow` command. Thin: parse, call a service, print."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy import func, select

from sealflow.cli_audit import audit_app
from sealflow.cli_backup import backup_app
from sealflow.cli_common import _fail, _overrides, _print_json, _settings
from sealflow.cli_keys import keys_app
from sealflow.cli_purge import purge, retention_app
from sealflow.cli_staff import staff_app
from sealflow.cli_subjects import subjects_app
from sealflow.config import Settings

app = typer.Typer(help="sealflow: workflow automation with enforced data protection.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
workflows_app = typer.Typer(help="Import and export workflow definitions.", no_args_is_help=True)
accounts_app = typer.Typer(help="Accounts and their API tokens (operator commands).",
                           no_args_is_help=True)
app.add_typer(workflows_app, name="workflows")
app.add_typer(accounts_app, name="accounts")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(retention_app, name="retention")
app.command("purge")(purge)
app.add_typer(subjects_app, name="subjects")
app.add_typer(staff_app, name="staff")
app.add_typer(backup_app, name="backup")



@app.callback()
def _global(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (SEALFLOW_DATA_DIR)")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (SEALFLOW_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="HTTPS port (SEALFLOW_PORT)")] = None,
) -> None:
    _overrides.update(data_dir=data_dir, host=host, port=port)


def _operator_token(settings: Settings) -> str:
    """The operator token (creates accounts through the API), made once with mode 0600."""
    path = settings.data_dir / "operator.token"
    if not path.exists():
        token = "sfo_" + secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(token + "\n")
    return path.read_text().strip()


OWNER_EMAIL = typer.Option(
    help="E-mail of the account's first owner: prints a one-time invitation (7 days) they "
         "accept with a name and a password (POST /v1/invitations/accept)")


@app.command()
def migrate() -> None:
    """Create or upgrade every region's database to the latest schema."""
    from sealflow.bootstrap import build_cells, migrate_all

    settings = _settings()
    cells = build_cells(settings)
    migrate_all(cells)
    typer.echo(f"migrated regions: {', '.join(cells)}")
    cells.dispose()


@app.command()
def init(
    name: Annotated[str, typer.Option(help="Name of the first account")] = "My company",
    region: Annotated[str, typer.Option(help="Region of the first account")] = "us",
    owner_email: Annotated[str | None, OWNER_EMAIL] = None,
) -> None:
    """First run: migrate, make the development certificate, create a first owner account
    (its API token is printed once and never again; with --owner-email, an invitation for
    its first owner too). Does nothing that is already done."""
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.clock import SystemClock
    from sealflow.db.tables import accounts
    from sealflow.services.accounts import create_account
    from sealflow.tls import certificate_files

    settings = _settings()
    cells = build_cells(settings)
    migrate_all(cells)
    certificate_files(settings.tls())
    _operator_token(settings)
    existing = 0
    for r in cells:
        with cells[r].read() as conn:
            existing += conn.execute(select(func.count()).select_from(accounts)).scalar_one()
    if existing:
        typer.echo(f"sealflow is set up in {settings.data_dir} ({existing} account(s) exist).")
    else:
        account, token = create_account(cells, SystemClock(), name=name, region=region)
        typer.echo(f"Created account {account.id} ({account.name}) in region {account.region}.")
        typer.echo("Its API token, shown this once (store it; `sealflow accounts token` makes "
                   "another):")
        typer.echo(f"  {token}")
        if owner_email is not None:
            invited = _invite_owner(settings, cells, account.region, account.id, owner_email)
            typer.echo(f"Invitation for its first owner {invited['email']}, shown this once "
                       f"(valid until {invited['expires_at']}):")
            typer.echo(f"  {invited['invitation']}")
            typer.echo(f"  {invited['accept']}")
    ca = settings.tls().dev_dir / "dev-ca.pem"
    if settings.tls_cert_file is None:
        typer.echo(f"Development CA (trust it in your client): {ca}")
    cells.dispose()


@app.command()
def serve(
    workers: Annotated[bool, typer.Option(help="Run the embedded workers and scheduler")] = True,
) -> None:
    """Serve the API over HTTPS (TLS only; no plaintext listener)."""
    from sealflow.api.app import asgi_app, create_app
    from sealflow.bootstrap import build_platform
    from sealflow.logs import configure_logging
    from sealflow.tls import build_ssl_context
    from sealflow.tls import serve as tls_serve

    settings = _settings()
    configure_logging(settings.log_level,
                      settings.log_dir() if settings.log_files.enabled else None)
    platform = build_platform(settings)
    application = create_app(platform, operator_token=_operator_token(settings),
                             run_workers=workers and settings.embedded_workers)
    context = build_ssl_context(settings.tls())
    typer.echo(f"sealflow listening on https://{settings.host}:{settings.port}", err=True)
    # uvicorn's access log is off: ours (api/access_log) drops tokens, query values and IPs.
    tls_serve(asgi_app(application), settings.host, settings.port, context, log_config=None,
              access_log=False)


@app.command()
def worker(
    region: Annotated[
        list[str] | None, typer.Option(help="Regions to work for (default all)")
    ] = None,
) -> None:
    """Run workers and the scheduler without the API (same database as `serve`)."""
    from sealflow.bootstrap import build_platform
    from sealflow.logs import configure_logging

    settings = _settings()
    configure_logging(settings.log_level,
                      settings.log_dir() if settings.log_files.enabled else None)
    platform = build_platform(settings)
    if region:
        unknown = [r for r in region if r not in platform.cells]
        if unknown:
            _fail(f"unknown region(s) {', '.join(unknown)}; served: {', '.join(platform.cells)}")
        platform.queue.regions = list(region)
        platform.ticker.regions = list(region)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await platform.start()
        typer.echo(f"worker {platform.queue.owner} running for {', '.join(platform.queue.regions)}",
                   err=True)
        await stop.wait()
        typer.echo("draining in-flight executions ...", err=True)
        await platform.stop()

    asyncio.run(main())


@app.command()
def run(
    workflow: Annotated[str, typer.Argument(help="Workflow id")],
    input: Annotated[
        Path | None, typer.Option("--input", help="JSON or YAML file: the trigger body")
    ] = None,
) -> None:
    """Run a workflow now in this process and print the execution (its Debug view)."""
    from sealflow.bootstrap import build_platform
    from sealflow.cli_ops import run_now

    settings = _settings()
    payload = _read_input(input)
    platform = build_platform(settings)
    detail = asyncio.run(run_now(platform, workflow, payload))
    _print_json(detail)
    if detail["status"] != "succeeded":
        raise typer.Exit(1)


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as err:
        _fail(f"cannot read {what}{path}: {err.strerror}")
    except UnicodeDecodeError as err:
        _fail(f"{what}{path} is not UTF-8 text (byte {err.start})")


def _read_input(path: Path | None) -> Any:
    if path is None:
        return None
    import yaml

    from sealflow.core.json_values import storable_problem

    text = _read_text(path, "--input ")

    try:
        payload = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        _fail(f"--input {path} is not valid JSON/YAML: {' '.join(str(err).split())}")
    problem = storable_problem(payload)
    if problem:
        _fail(f"--input {path}: {problem[0]}: {problem[1]}")
    return payload


@workflows_app.command("import")
def workflows_import(
    file: Annotated[Path, typer.Argument(help="Workflow definition (.json, .yaml)")],
    account: Annotated[str, typer.Option(help="Account id")],
    workflow_id: Annotated[
        str | None, typer.Option("--id", help="Save as a new version of this workflow")
    ] = None,
) -> None:
    """Validate and save a workflow definition (a new version when --id is given)."""
    from sealflow.bootstrap import build_platform
    from sealflow.cli_ops import import_workflow

    settings = _settings()
    text = _read_text(file, "")
    platform = build_platform(settings)
    _print_json(import_workflow(platform, account, text, workflow_id))


@workflows_app.command("export")
def workflows_export(
    workflow_id: Annotated[str, typer.Argument(help="Workflow id")],
    version: Annotated[int | None, typer.Option(help="Version (default: current)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or yaml")] = "yaml",
) -> None:
    """Print a workflow definition."""
    from sealflow.bootstrap import build_platform
    from sealflow.cli_ops import export_workflow

    if fmt not in ("json", "yaml"):
        _fail("--format must be json or yaml")
    platform = build_platform(_settings())
    typer.echo(export_workflow(platform, workflow_id, version, fmt))


@accounts_app.command("create")
def accounts_create(
    name: Annotated[str, typer.Option(help="Account name")],
    region: Annotated[str, typer.Option(help="us, eu or apac")] = "us",
    owner_email: Annotated[str | None, OWNER_EMAIL] = None,
) -> None:
    """Create an account in a region; prints its API token once (and, with --owner-email,
    the one-time invitation its first owner accepts to set a password)."""
    from sealflow.bootstrap import build_cells
    from sealflow.clock import SystemClock
    from sealflow.services.accounts import create_account

    settings = _settings()
    cells = build_cells(settings)
    account, token = create_account(cells, SystemClock(), name=name, region=region)
    out: dict[str, Any] = {"id": account.id, "name": account.name, "region": account.region,
                           "token": token}
    if owner_email is not None:
        out["owner"] = _invite_owner(settings, cells, account.region, account.id, owner_email,
                                     token=token)
    _print_json(out)


def _invite_owner(settings: Settings, cells: Any, region: str, account_id: str, email: str,
                  token: str | None = None) -> dict[str, Any]:
    """Invite the first owner of a new account, as the operator (services.members)."""
    from sealflow.clock import SystemClock
    from sealflow.core.errors import Conflict, InvalidInput
    from sealflow.services import members
    from sealflow.services.accounts import Caller
    from sealflow.services.users import Identity

    ident = Identity.build(settings.data_dir, settings.sessions)
    operator = Caller(region=region, account_id=account_id,
                      token_id="operator:cli")  # noqa: S106 - an id, not a secret
    try:
        inv = members.invite(cells, SystemClock(), ident, operator, email=email, role="owner")
    except (InvalidInput, Conflict) as err:
        detail = "; ".join(f"{i.path}: {i.message}" for i in getattr(err, "issues", []))
        _fail(f"account {account_id} was created (API token: {token or 'printed above'}) but "
              f"its owner could not be invited: {detail or err.message}; invite one with "
              "POST /v1/invitations")
    return {"email": inv.email, "invitation": inv.token, "expires_at": inv.expires_at,
            "accept": "POST /v1/invitations/accept with {\"token\": <invitation>, "
                      "\"name\": ..., \"password\": ...}"}


@accounts_app.command("token")
def accounts_token(
    account: Annotated[str, typer.Option(help="Account id")],
    name: Annotated[str, typer.Option(help="A name for the token")] = "cli",
    scopes: Annotated[str | None, typer.Option(
        help="Comma-separated permission names (e.g. workflows.read,executions.read); "
             "default: all of the owner's")] = None,
    expires_in_days: Annotated[int | None, typer.Option(
        help="Days until it expires (1 to 365); default: never")] = None,
) -> None:
    """Issue another API token for an account (printed once): the operator's, acting as the
    account's owner, narrowed to --scopes if given."""
    from sealflow.bootstrap import build_cells
    from sealflow.clock import SystemClock
    from sealflow.core.errors import InvalidInput
    from sealflow.services.accounts import find_account, issue_token

    cells = build_cells(_settings())
    found = find_account(cells, account)
    names = None if scopes is None else [s.strip() for s in scopes.split(",") if s.strip()]
    try:
        token = issue_token(cells, SystemClock(), region=found.region, account_id=found.id,
                            name=name, scopes=names, expires_in_days=expires_in_days)
    except InvalidInput as e:
        _fail("; ".join(f"{i.path.replace('$.', '--').replace('_', '-')}: {i.message}"
                        for i in e.issues) or e.message)
    typer.echo(token)


@accounts_app.command("delete")
def accounts_delete(
    account: Annotated[str, typer.Option(help="Account id")],
    yes: Annotated[
        bool, typer.Option("--yes", help="Confirm: its keys and data are destroyed for good")
    ] = False,
) -> None:
    """Delete an account: shred its keys, remove its rows, print the deletion record. Run it
    again to finish a deletion that was interrupted."""
    if not yes:
        _fail("deleting an account destroys its keys and data for good; add --yes to confirm")
    from sealflow.bootstrap import build_cells
    from sealflow.cli_ops import delete_account
    from sealflow.clock import SystemClock

    cells = build_cells(_settings())
    try:
        _print_json(delete_account(cells, SystemClock(), account))
    finally:
        cells.dispose()


@app.command()
def check(
    deploy: Annotated[bool, typer.Option("--deploy", help="Check settings for production")] = False,
) -> None:
    """Named warnings for unsafe settings (exit 1 when any warning is found with --deploy)."""
    from sealflow.checks import deploy_checks

    settings = _settings()
    found = deploy_checks(tls=settings.tls(), host=settings.host, data_dir=settings.data_dir,
                          ssrf_allow=settings.ssrf_allow)
    for w in found:
        typer.echo(f"{w.id} [{w.level}] {w.message}")
    warnings = [w for w in found if w.level == "warning"]
    typer.echo(f"{len(warnings)} warning(s), {len(found) - len(warnings)} note(s)")
    if deploy and warnings:
        raise typer.Exit(1)


def main() -> None:
    from sealflow.core.errors import SealflowError

    try:
        app()
    except SealflowError as err:
        issues = getattr(err, "issues", [])
        if len(issues) == 1 and issues[0].path not in err.message:
            # One issue: one line, saying where.
            typer.echo(f"error: {err.message}: {issues[0].path}: {issues[0].message}", err=True)
        else:
            typer.echo(f"error: {err.message}", err=True)
            for issue in issues if len(issues) > 1 else []:
                typer.echo(f"  {issue.path}: {issue.message}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
