"""Executions: list with filters, the Debug view of one, cancel, replay."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from sealflow.api.deps import PlatformDep
from sealflow.api.permissions import requires
from sealflow.api.schemas import (
    CancelOut,
    ExecutionDetail,
    ExecutionStarted,
    ExecutionSummary,
    Timestamp,
    errors,
)
from sealflow.core.executions import Status
from sealflow.identity.permissions import Permission
from sealflow.services import executions
from sealflow.services.accounts import Caller

router = APIRouter(prefix="/v1/executions", tags=["executions"],
                   responses=errors(401, 403, 422, 429))

ExecutionsRead = Annotated[Caller, Depends(requires(Permission.EXECUTIONS_READ))]
ExecutionsManage = Annotated[Caller, Depends(requires(Permission.EXECUTIONS_MANAGE))]


@router.get("", response_model=list[ExecutionSummary])
def list_(
    p: PlatformDep, who: ExecutionsRead,
    workflow_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Status | None = None,
    before: Annotated[Timestamp | None, Query(description="Only executions created before")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ExecutionSummary]:
    rows = executions.list_executions(
        p.cells, who, workflow_id=workflow_id, status=status, limit=limit, before=before
    )
    return [ExecutionSummary(**r) for r in rows]


@router.get("/{execution_id}", response_model=ExecutionDetail, responses=errors(404))
def read(execution_id: str, p: PlatformDep, who: ExecutionsRead) -> ExecutionDetail:
    return ExecutionDetail(**executions.detail(p.cells, p.clock, who, execution_id))


@router.post("/{execution_id}/cancel", response_model=CancelOut, responses=errors(404, 409))
def cancel(execution_id: str, p: PlatformDep, who: ExecutionsManage) -> CancelOut:
    status = executions.cancel(p.cells, p.clock, who, execution_id)
    return CancelOut(execution_id=execution_id, status=status)


@router.post("/{execution_id}/replay", status_code=202, response_model=ExecutionStarted,
             responses=errors(404, 409))
def replay(execution_id: str, p: PlatformDep, who: ExecutionsManage) -> ExecutionStarted:
    started = executions.replay(p.cells, p.clock, who, execution_id)
    p.queue.submit(who.region, started.id)
    return ExecutionStarted(execution_id=started.id, status="queued")
