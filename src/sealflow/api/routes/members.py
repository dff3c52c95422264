"""Members and invitations (I1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from sealflow.api.deps import PlatformDep, identity
from sealflow.api.identity_schemas import (
    AcceptIn,
    InvitationIn,
    InvitationOut,
    MemberOut,
    RoleIn,
    errors,
)
from sealflow.api.permissions import public, requires
from sealflow.identity.permissions import Permission
from sealflow.services import members
from sealflow.services.accounts import Caller
from sealflow.services.users import Identity

router = APIRouter(prefix="/v1", tags=["members"], responses=errors(401, 403, 422, 429))
Reader = Annotated[Caller, Depends(requires(Permission.MEMBERS_READ))]
Manager = Annotated[Caller, Depends(requires(Permission.MEMBERS_MANAGE))]
IdentityDep = Annotated[Identity, Depends(identity)]


def _out(m: members.Member) -> MemberOut:
    return MemberOut(id=m.id, email=m.email, name=m.name, role=m.role,
                     totp_enabled=m.totp_enabled, created_at=m.created_at,
                     disabled_at=m.disabled_at)


@router.get("/members", response_model=list[MemberOut])
def list_members(who: Reader, p: PlatformDep) -> list[MemberOut]:
    return [_out(m) for m in members.list_members(p.cells, who)]


@router.post("/invitations", status_code=201, response_model=InvitationOut,
             responses=errors(400, 409))
def invite(body: InvitationIn, who: Manager, p: PlatformDep, ident: IdentityDep
           ) -> InvitationOut:
    """Invites an e-mail address with a role; answers the invitation token once (valid 7
    days). Inviting an owner needs the owner role."""
    inv = members.invite(p.cells, p.clock, ident, who, email=body.email, role=body.role)
    return InvitationOut(id=inv.id, email=inv.email, role=inv.role, expires_at=inv.expires_at,
                         token=inv.token)


@router.post("/invitations/accept", status_code=201, response_model=MemberOut,
             responses=errors(400, 409),
             dependencies=[Depends(public("the invitation token is the credential"))])
def accept(body: AcceptIn, p: PlatformDep, ident: IdentityDep) -> MemberOut:
    """Becomes a member: the invitation's token, your name and a password (at least 12
    characters, not a common one). Then log in."""
    return _out(members.accept(p.cells, p.clock, ident, token=body.token, name=body.name,
                               password=body.password))


@router.patch("/members/{member_id}", response_model=MemberOut,
              responses=errors(400, 404, 409))
def change_role(member_id: str, body: RoleIn, who: Manager, p: PlatformDep) -> MemberOut:
    return _out(members.change_role(p.cells, p.clock, who, member_id, body.role))


@router.delete("/members/{member_id}", status_code=204, responses=errors(404, 409))
def remove(member_id: str, who: Manager, p: PlatformDep) -> None:
    """Removes a member (their sessions end). An account always keeps an owner."""
    members.remove(p.cells, p.clock, who, member_id)
