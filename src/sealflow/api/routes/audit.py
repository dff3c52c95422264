"""The account's audit trail (A1): read with filters, export as JSON lines, and the proofs
that let a customer check a record against the region's signed checkpoints themselves."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from sealflow.api.deps import PlatformDep
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import requires
from sealflow.api.schemas import Timestamp
from sealflow.audit.records import Action
from sealflow.identity.permissions import Permission
from sealflow.services import audit_reads
from sealflow.services.accounts import Caller

router = APIRouter(prefix="/v1/account/audit", tags=["audit"],
                   responses=errors(401, 403, 422, 429))
AuditRead = Annotated[Caller, Depends(requires(Permission.AUDIT_READ))]
MAX_SEQ = 2**53  # record numbers: far beyond any log, within every database's integers

ActorQ = Annotated[str | None, Query(max_length=200, description="An actor's id")]
# The schema names every action and prefix, so a client (or a fuzzer) knows what is valid.
_NAMES = sorted({a.value for a in Action} | {a.value.split(".")[0] + "." for a in Action})
ActionQ = Annotated[str | None, Query(
    pattern="^(" + "|".join(re.escape(n) for n in _NAMES) + ")$",
    description="An action, or a prefix such as 'login.'")]
SinceQ = Annotated[Timestamp | None, Query(description="Records at or after this time")]
UntilQ = Annotated[Timestamp | None, Query(description="Records before this time")]


class AuditPage(BaseModel):
    records: list[dict[str, Any]]
    next_after: int | None  # pass as `after` for the next page; null at the end


class InclusionOut(BaseModel):
    record: dict[str, Any]
    proof: dict[str, Any]
    checkpoint: dict[str, Any]
    public_key: str


class ConsistencyOut(BaseModel):
    proof: dict[str, Any]
    checkpoint: dict[str, Any] | None
    public_key: str


@router.get("", response_model=AuditPage)
def list_(p: PlatformDep, who: AuditRead, actor: ActorQ = None, action: ActionQ = None,
          since: SinceQ = None, until: UntilQ = None,
          after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
          limit: Annotated[int, Query(ge=1, le=audit_reads.MAX_PAGE)] = 100) -> AuditPage:
    """The account's records, oldest first, filtered by actor, action and time."""
    filters = audit_reads.Filters(actor=actor, action=action, since=since, until=until)
    records, next_after = audit_reads.page(p.cells, who, filters, after=after, limit=limit)
    return AuditPage(records=records, next_after=next_after)


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}}}})
def export(p: PlatformDep, who: AuditRead, actor: ActorQ = None, action: ActionQ = None,
           since: SinceQ = None, until: UntilQ = None) -> StreamingResponse:
    """Every matching record as JSON lines (the export is itself recorded)."""
    filters = audit_reads.Filters(actor=actor, action=action, since=since, until=until)
    lines = audit_reads.export(p.cells, p.clock, who, filters)
    return StreamingResponse(lines, media_type="application/x-ndjson", headers={
        "Content-Disposition": 'attachment; filename="audit.jsonl"'})


@router.get("/{seq}/proof", response_model=InclusionOut, responses=errors(404))
def proof(seq: Annotated[int, Path(ge=1, le=MAX_SEQ)], p: PlatformDep,
          who: AuditRead) -> InclusionOut:
    """The record, its RFC 9162 inclusion proof, the signed checkpoint and the public key."""
    return InclusionOut(**audit_reads.inclusion(p.cells, who, seq))


@router.get("/consistency", response_model=ConsistencyOut, responses=errors(400))
def consistency(p: PlatformDep, who: AuditRead,
                first: Annotated[int, Query(ge=0, le=MAX_SEQ)],
                second: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None
                ) -> ConsistencyOut:
    """Proof that the log of `first` records is a prefix of the log of `second`."""
    return ConsistencyOut(**audit_reads.consistency(p.cells, who, first, second))
