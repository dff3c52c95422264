"""Executions: list with filters, the Debug view of one, cancel, replay."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from sealflow.api.deps import CallerDep, PlatformDep
from sealflow.api.schemas import (
    ERRORS,
    CancelOut,
    ExecutionDetail,
    ExecutionStarted,
    ExecutionSummary,
)
from sealflow.services import executions

router = APIRouter(prefix="/v1/executions", tags=["executions"], responses=ERRORS)


@router.get("", response_model=list[ExecutionSummary])
def list_(
    p: PlatformDep, who: CallerDep,
    workflow_id: Annotated[str | None, Query(max_length=36)] = None,
    status: Annotated[str | None, Query(max_length=16)] = None,
    before: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[ExecutionSummary]:
    rows = executions.list_executions(
        p.cells, who, workflow_id=workflow_id, status=status, limit=limit, before=before
    )
    return [ExecutionSummary(**r) for r in rows]


@router.get("/{execution_id}", response_model=ExecutionDetail)
def read(execution_id: str, p: PlatformDep, who: CallerDep) -> ExecutionDetail:
    return ExecutionDetail(**executions.detail(p.cells, who, execution_id))


@router.post("/{execution_id}/cancel", response_model=CancelOut)
def cancel(execution_id: str, p: PlatformDep, who: CallerDep) -> CancelOut:
    status = executions.cancel(p.cells, p.clock, who, execution_id)
    return CancelOut(execution_id=execution_id, status=status)


@router.post("/{execution_id}/replay", status_code=202, response_model=ExecutionStarted)
def replay(execution_id: str, p: PlatformDep, who: CallerDep) -> ExecutionStarted:
    started = executions.replay(p.cells, p.clock, who, execution_id)
    p.queue.submit(who.region, started.id)
    return ExecutionStarted(execution_id=started.id, status="queued")
