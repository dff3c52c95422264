"""Data subject requests (D5): record a person's request to get their data or be erased,
list them against their legal due dates, carry them out, download an export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from sealflow.api.access_log import Pseudonymiser, load_or_create_key
from sealflow.api.deps import PlatformDep, identity
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import requires
from sealflow.api.subject_request_schemas import (
    RejectIn,
    RunIn,
    SubjectRequestIn,
    SubjectRequestOut,
)
from sealflow.identity.permissions import Permission
from sealflow.services import subject_requests as service
from sealflow.services.accounts import Caller
from sealflow.services.subject_erasure_log import erasure_log_path
from sealflow.services.users import Identity

router = APIRouter(prefix="/v1/account/subject-requests", tags=["subject requests"],
                   responses=errors(401, 403, 429))
Manager = Annotated[Caller, Depends(requires(Permission.SUBJECT_REQUESTS_MANAGE))]
IdentityDep = Annotated[Identity, Depends(identity)]


def _logs_dir(p: PlatformDep) -> Path:
    """The server log files' directory (settings.log_files; `<data_dir>/logs` by default)."""
    return p.settings.log_dir()


@router.post("", status_code=201, response_model=SubjectRequestOut,
             responses=errors(400, 404, 422))
def create(body: SubjectRequestIn, who: Manager, p: PlatformDep,
           ident: IdentityDep) -> SubjectRequestOut:
    """Records a request about the member with `email`: `kind` export or erasure, under
    `law` (due 30 days after receipt for GDPR, 45 for CCPA). 404 when no member of the
    account has that address."""
    return SubjectRequestOut.of(service.create(
        p.cells, p.clock, ident, service.Requester.of(who), kind=body.kind, law=body.law,
        email=body.email, received_at=body.received_at))


@router.get("", response_model=list[SubjectRequestOut], responses=errors(422))
def list_requests(who: Manager, p: PlatformDep, overdue: Annotated[bool, Query(
        description="Only open requests past their due date")] = False,
                  ) -> list[SubjectRequestOut]:
    """The account's requests, the soonest due first, each saying whether it is overdue."""
    return [SubjectRequestOut.of(r) for r in service.list_requests(
        p.cells, p.clock, service.Requester.of(who), overdue_only=overdue)]


@router.get("/{request_id}", response_model=SubjectRequestOut, responses=errors(404))
def read(request_id: str, who: Manager, p: PlatformDep) -> SubjectRequestOut:
    return SubjectRequestOut.of(service.get(p.cells, p.clock, service.Requester.of(who),
                                            request_id))


@router.post("/{request_id}/run", response_model=SubjectRequestOut,
             responses=errors(400, 404, 409, 422))
def run(request_id: str, who: Manager, p: PlatformDep, body: RunIn | None = None
        ) -> SubjectRequestOut:
    """Carries the request out. Export: completed, its archive downloadable for 30 days.
    Erasure: the member's personal data goes from the database and the server's log files
    (the audit trail keeps only their opaque id), also what is kept under the `addresses`
    given; refused (409 last_owner) for the account's
    last owner, and erasing an owner needs owners.manage."""
    pseudonymise = Pseudonymiser(load_or_create_key(p.settings.access_log_key_file()))
    return SubjectRequestOut.of(service.run(
        p.cells, p.clock, service.Requester.of(who), request_id, logs_dir=_logs_dir(p),
        erasure_log=erasure_log_path(p.settings.data_dir, who.region),
        addresses=body.addresses if body else None, pseudonymise=pseudonymise))


@router.post("/{request_id}/reject", response_model=SubjectRequestOut,
             responses=errors(400, 404, 409, 422))
def reject(request_id: str, body: RejectIn, who: Manager, p: PlatformDep) -> SubjectRequestOut:
    return SubjectRequestOut.of(service.reject(p.cells, p.clock, service.Requester.of(who),
                                               request_id, reason=body.reason))


@router.get("/{request_id}/export", responses={
    **errors(404, 409),
    200: {"description": "The archive: JSON, every kind of data held about the member"}})
def download(request_id: str, who: Manager, p: PlatformDep) -> JSONResponse:
    """The archive of a completed export request, as a JSON file (each download is on the
    audit trail)."""
    archive = service.download(p.cells, p.clock, service.Requester.of(who), request_id)
    return JSONResponse(archive, headers={
        "Content-Disposition": f'attachment; filename="subject-export-{request_id}.json"',
        "Cache-Control": "no-store"})
