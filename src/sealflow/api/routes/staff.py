"""Staff access (I7). Platform staff ask for, list and end their access grants under
/v1/staff/grants; the customer's owners see every grant on their account with the requests
made under it, and approve, deny or revoke them, under /v1/account/staff-access.

Using a grant is not a route of its own: staff send `Sealflow-Access-Grant: <id>` with their
requests to the ordinary /v1 routes (api.deps), which then read the customer's account."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from sealflow.api.deps import PlatformDep, caller
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import PERMISSION_ATTR, requires
from sealflow.api.staff_schemas import GrantIn, GrantOut
from sealflow.identity.permissions import Permission
from sealflow.services import staff_access, staff_members
from sealflow.services.accounts import Caller


def staff_check(who: Annotated[Caller, Depends(caller)], p: PlatformDep) -> Caller:
    """The caller, if it is platform staff signed in with a second factor or SSO (the
    permission staff.access, decided by identity.permissions.authorize in
    services.staff_members.require); 403 otherwise."""
    staff_members.require(p.cells, who)
    return who


# Declared like requires(): the route-permission walker finds the permission it checks.
setattr(staff_check, PERMISSION_ATTR, Permission.STAFF_ACCESS)

Staff = Annotated[Caller, Depends(staff_check)]
AuditRead = Annotated[Caller, Depends(requires(Permission.AUDIT_READ))]
GrantsManage = Annotated[Caller, Depends(requires(Permission.STAFF_GRANTS_MANAGE))]

staff_router = APIRouter(prefix="/v1/staff/grants", tags=["staff access"],
                         responses=errors(401, 403, 429))
account_router = APIRouter(prefix="/v1/account/staff-access", tags=["staff access"],
                           responses=errors(401, 403, 429))


@staff_router.post("", status_code=201, response_model=GrantOut,
                   responses=errors(400, 404, 422))
def request_grant(body: GrantIn, who: Staff, p: PlatformDep) -> GrantOut:
    """Asks for read access to an account: active at once, or pending until an owner
    approves it when the account's `staff.require_approval` is on. The customer sees it."""
    grant = staff_access.request(p.cells, p.clock, who, account_id=body.account_id,
                                 justification=body.justification,
                                 expires_in_minutes=body.expires_in_minutes)
    return GrantOut.of(grant)


@staff_router.get("", response_model=list[GrantOut])
def list_own(who: Staff, p: PlatformDep) -> list[GrantOut]:
    """Your grants, newest first, with the requests made under each."""
    return [GrantOut.of(g) for g in staff_access.list_own(p.cells, p.clock, who)]


@staff_router.delete("/{grant_id}", response_model=GrantOut, responses=errors(404, 409))
def end_own(grant_id: str, who: Staff, p: PlatformDep) -> GrantOut:
    """Ends one of your grants before it expires."""
    return GrantOut.of(staff_access.end_own(p.cells, p.clock, who, grant_id))


@account_router.get("", response_model=list[GrantOut])
def list_grants(who: AuditRead, p: PlatformDep) -> list[GrantOut]:
    """Every staff access grant asked on this account, newest first: who (the staff
    member's id and name), why, until when, its status, and the requests made under it."""
    return [GrantOut.of(g) for g in staff_access.list_for_account(p.cells, p.clock, who)]


@account_router.post("/{grant_id}/approve", response_model=GrantOut,
                     responses=errors(404, 409))
def approve(grant_id: str, who: GrantsManage, p: PlatformDep) -> GrantOut:
    """Approves a pending grant (it still ends at its expiry)."""
    return GrantOut.of(staff_access.approve(p.cells, p.clock, who, grant_id))


@account_router.post("/{grant_id}/deny", response_model=GrantOut, responses=errors(404, 409))
def deny(grant_id: str, who: GrantsManage, p: PlatformDep) -> GrantOut:
    """Denies a pending grant: it never opens the account."""
    return GrantOut.of(staff_access.deny(p.cells, p.clock, who, grant_id))


@account_router.post("/{grant_id}/revoke", response_model=GrantOut,
                     responses=errors(404, 409))
def revoke(grant_id: str, who: GrantsManage, p: PlatformDep) -> GrantOut:
    """Ends a pending or active grant at once."""
    return GrantOut.of(staff_access.revoke(p.cells, p.clock, who, grant_id))
