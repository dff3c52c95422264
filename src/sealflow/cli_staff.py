"""`sealflow staff ...`: the operator's list of platform staff (I7). Only this command adds
or removes staff; no API route can. Thin: parse, call services.staff_members, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sealflow.regions.cells import Cells
    from sealflow.services.staff_members import StaffMember
    from sealflow.services.users import Identity

staff_app = typer.Typer(help="Platform staff: who may ask customers for access grants "
                        "(operator commands).", no_args_is_help=True)

EMAIL = typer.Option(help="The staff member's e-mail address (an existing member)")


def _parts() -> tuple[Cells, Identity]:
    from sealflow.bootstrap import build_cells, migrate_all
    from sealflow.cli_common import _settings
    from sealflow.services.users import Identity

    settings = _settings()
    cells = build_cells(settings)
    migrate_all(cells)
    return cells, Identity.build(settings.data_dir, settings.sessions)


def _out(m: StaffMember) -> dict[str, Any]:
    return {"user_id": m.user_id, "region": m.region, "account_id": m.account_id,
            "name": m.name, "email": m.email, "totp_enabled": m.totp_enabled,
            "added_at": m.added_at}


def _run(action: str, email: str) -> None:
    from sealflow.cli_common import _fail, _print_json
    from sealflow.clock import SystemClock
    from sealflow.core.errors import Conflict, NotFound
    from sealflow.services import staff_members

    cells, ident = _parts()
    try:
        change = staff_members.add if action == "add" else staff_members.remove
        member = change(cells, SystemClock(), ident, email)
    except (NotFound, Conflict) as err:
        _fail(err.message)
    finally:
        cells.dispose()
    out = _out(member)
    if action == "add" and not member.totp_enabled:
        out["warning"] = ("no second factor enrolled: staff access needs a login with one "
                          "(or through SSO)")
    _print_json(out)


@staff_app.command("add")
def staff_add(email: Annotated[str, EMAIL]) -> None:
    """Put a member on the platform staff list (they may then ask for access grants)."""
    _run("add", email)


@staff_app.command("remove")
def staff_remove(email: Annotated[str, EMAIL]) -> None:
    """Take a member off the staff list: their grants stop working at once."""
    _run("remove", email)


@staff_app.command("list")
def staff_list() -> None:
    """Every platform staff member, in every served region."""
    from sealflow.cli_common import _print_json
    from sealflow.services import staff_members

    cells, _ = _parts()
    try:
        _print_json([_out(m) for m in staff_members.list_staff(cells)])
    finally:
        cells.dispose()
