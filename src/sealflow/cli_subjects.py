"""`sealflow subjects ...`: data subject requests (D5) from the operator's shell. Thin: each
command records the request (actor `operator:cli`), carries it out through
services.subject_requests, and prints the request (or writes the export archive)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sealflow.config import Settings
    from sealflow.regions.cells import Cells
    from sealflow.services.subject_requests import Requester, SubjectRequest

subjects_app = typer.Typer(help="Data subject requests: export or erase a person (GDPR, CCPA).",
                           no_args_is_help=True)

AccountOpt = Annotated[str, typer.Option(help="Account id")]
EmailOpt = Annotated[str, typer.Option(help="The member's e-mail address")]
LawOpt = Annotated[str, typer.Option(help="gdpr (due in 30 days) or ccpa (45 days)")]


def _open(account: str) -> tuple[Settings, Cells, Requester]:
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.cli_common import _settings
    from sealflow.services.accounts import find_account
    from sealflow.services.subject_requests import Requester

    settings = _settings()
    cells = build_cells(settings)
    try:
        migrate_all(cells)
        found = find_account(cells, account)
    except BaseException:
        cells.dispose()
        raise
    return settings, cells, Requester.operator(found.region, found.id)


def _shown(r: SubjectRequest) -> dict[str, object]:
    from dataclasses import asdict

    return asdict(r)


def _create_and_run(kind: str, account: str, email: str, law: str) -> tuple[
        Settings, Cells, Requester, SubjectRequest]:
    from sealflow.clock import SystemClock
    from sealflow.services import subject_requests
    from sealflow.services.subject_erasure_log import erasure_log_path
    from sealflow.services.users import Identity

    settings, cells, req = _open(account)
    try:
        ident = Identity.build(settings.data_dir, settings.sessions)
        made = subject_requests.create(cells, SystemClock(), ident, req, kind=kind, law=law,
                                       email=email)
        done = subject_requests.run(
            cells, SystemClock(), req, made.id, logs_dir=settings.log_dir(),
            erasure_log=erasure_log_path(settings.data_dir, req.region))
    except BaseException:
        cells.dispose()
        raise
    return settings, cells, req, done


@subjects_app.command("export")
def subjects_export(
    account: AccountOpt, email: EmailOpt, law: LawOpt = "gdpr",
    out: Annotated[Path | None, typer.Option(
        help="Write the archive here (mode 0600); default: print it")] = None,
) -> None:
    """Export everything held about a member as a JSON archive (recorded on the audit trail)."""
    import os

    from sealflow.cli_common import _fail, _print_json
    from sealflow.clock import SystemClock
    from sealflow.services import subject_requests

    _, cells, req, done = _create_and_run("export", account, email, law)
    try:
        archive = subject_requests.download(cells, SystemClock(), req, done.id)
    finally:
        cells.dispose()
    if out is None:
        _print_json(archive)
        return
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        _fail(f"cannot write --out {out}: {err.strerror} (it must not exist yet)")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(archive, fh, indent=2)
    _print_json({**_shown(done), "archive": str(out)})


@subjects_app.command("erase")
def subjects_erase(
    account: AccountOpt, email: EmailOpt, law: LawOpt = "gdpr",
    yes: Annotated[bool, typer.Option(
        "--yes", help="Confirm: the member's personal data is removed for good")] = False,
) -> None:
    """Erase a member: their rows, their lines in the server's log files; the audit trail
    keeps only their opaque id. Refused for the account's last owner."""
    from sealflow.cli_common import _fail, _print_json

    if not yes:
        _fail("erasing a member removes their personal data for good; add --yes to confirm")
    _, cells, _, done = _create_and_run("erasure", account, email, law)
    cells.dispose()
    _print_json(_shown(done))


@subjects_app.command("list")
def subjects_list(
    account: AccountOpt,
    overdue: Annotated[bool, typer.Option(
        "--overdue", help="Only open requests past their due date")] = False,
) -> None:
    """The account's requests, the soonest due first, each saying whether it is overdue."""
    from sealflow.cli_common import _print_json
    from sealflow.clock import SystemClock
    from sealflow.services import subject_requests

    _, cells, req = _open(account)
    try:
        found = subject_requests.list_requests(cells, SystemClock(), req, overdue_only=overdue)
    finally:
        cells.dispose()
    _print_json([_shown(r) for r in found])
