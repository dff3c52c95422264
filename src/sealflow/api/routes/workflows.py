"""Workflows: save (validated, versioned), read, list, validate, delete, run."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from sealflow.api.deps import PlatformDep
from sealflow.api.permissions import requires
from sealflow.api.schemas import (
    ExecutionDetail,
    ExecutionStarted,
    RunRequest,
    ValidationOut,
    VersionDocument,
    VersionOut,
    WorkflowOut,
    WorkflowSave,
    WorkflowSaved,
    errors,
    storable_problem,
)
from sealflow.api.waiting import wait_for_end
from sealflow.bootstrap import Platform
from sealflow.core.errors import InvalidInput, Issue
from sealflow.core.workflows import parse_text
from sealflow.identity.permissions import Permission
from sealflow.services import executions, workflows
from sealflow.services.accounts import Caller
from sealflow.services.workflows import WorkflowView

router = APIRouter(prefix="/v1/workflows", tags=["workflows"],
                   responses=errors(401, 403, 422, 429))

WorkflowsRead = Annotated[Caller, Depends(requires(Permission.WORKFLOWS_READ))]
WorkflowsWrite = Annotated[Caller, Depends(requires(Permission.WORKFLOWS_WRITE))]
WorkflowsRun = Annotated[Caller, Depends(requires(Permission.WORKFLOWS_RUN))]


def _document(definition: Any) -> Any:
    """The workflow document of a save: YAML/JSON text parsed here, so that every value can be
    checked to be storable before validation (a 2**70 in YAML text is refused with its path)."""
    document = parse_text(definition) if isinstance(definition, str) else definition
    problem = storable_problem(document)
    if problem:
        raise InvalidInput(f"invalid workflow: {problem[0]}: {problem[1]}",
                           [Issue(problem[0], problem[1])])
    return document


def _out(p: Platform, region: str, view: WorkflowView) -> WorkflowOut:
    url = (f"{p.settings.base_url()}/hooks/{region}/{view.webhook_token}"
           if view.webhook_token else None)
    return WorkflowOut(
        id=view.id, name=view.name, version=view.version, trigger_type=view.trigger_type,
        enabled=view.enabled, webhook_url=url, created_at=view.created_at,
        updated_at=view.updated_at,
    )


@router.post("/validate", response_model=ValidationOut, responses=errors(400))
def validate(body: WorkflowSave, p: PlatformDep, who: WorkflowsWrite) -> ValidationOut:
    try:
        workflows.to_definition(_document(body.definition), p.registry, p.limits)
    except InvalidInput as err:
        return ValidationOut(valid=False, issues=[i.as_dict() for i in err.issues])
    return ValidationOut(valid=True, issues=[])


@router.post("", status_code=201, response_model=WorkflowSaved, responses=errors(400))
def create(body: WorkflowSave, p: PlatformDep, who: WorkflowsWrite) -> WorkflowSaved:
    saved = workflows.create(p.cells, p.clock, p.registry, p.limits, who,
                             _document(body.definition))
    out = _out(p, who.region, saved.workflow)
    return WorkflowSaved(**out.model_dump(), webhook_secret=saved.webhook_secret)


@router.get("", response_model=list[WorkflowOut])
def list_(
    p: PlatformDep, who: WorkflowsRead,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[WorkflowOut]:
    views = workflows.list_workflows(p.cells, who, limit=limit, offset=offset)
    return [_out(p, who.region, v) for v in views]


@router.get("/{workflow_id}", response_model=WorkflowOut, responses=errors(404))
def read(workflow_id: str, p: PlatformDep, who: WorkflowsRead) -> WorkflowOut:
    return _out(p, who.region, workflows.get(p.cells, who, workflow_id))


@router.put("/{workflow_id}", response_model=WorkflowSaved, responses=errors(400, 404))
def update(workflow_id: str, body: WorkflowSave, p: PlatformDep, who: WorkflowsWrite
           ) -> WorkflowSaved:
    saved = workflows.update_definition(
        p.cells, p.clock, p.registry, p.limits, who, workflow_id, _document(body.definition)
    )
    out = _out(p, who.region, saved.workflow)
    return WorkflowSaved(**out.model_dump(), webhook_secret=saved.webhook_secret)


@router.delete("/{workflow_id}", status_code=204, response_class=Response,
               responses=errors(404))
def delete(workflow_id: str, p: PlatformDep, who: WorkflowsWrite) -> Response:
    workflows.delete_workflow(p.cells, p.clock, who, workflow_id)
    return Response(status_code=204)


@router.get("/{workflow_id}/versions", response_model=list[VersionOut], responses=errors(404))
def versions(workflow_id: str, p: PlatformDep, who: WorkflowsRead) -> list[VersionOut]:
    return [VersionOut(**v) for v in workflows.list_versions(p.cells, who, workflow_id)]


@router.get("/{workflow_id}/versions/{version}", response_model=VersionDocument,
            responses=errors(404))
def version(
    workflow_id: str, version: Annotated[int, Path(ge=1, le=1_000_000)], p: PlatformDep,
    who: WorkflowsRead,
) -> VersionDocument:
    return VersionDocument(**workflows.get_version(p.cells, who, workflow_id, version))


@router.post("/{workflow_id}/run", status_code=202,
             response_model=ExecutionStarted | ExecutionDetail, responses=errors(400, 404))
async def run(
    workflow_id: str, body: RunRequest, p: PlatformDep, who: WorkflowsRun
) -> ExecutionStarted | ExecutionDetail:
    started = executions.start(p.cells, p.clock, who, workflow_id, body.input)
    p.queue.submit(who.region, started.id)
    if not body.wait:
        return ExecutionStarted(execution_id=started.id, status="queued")
    timeout = min(body.timeout_s or p.limits.webhook_reply_timeout_s,
                  p.limits.webhook_reply_timeout_s)
    await wait_for_end(p, who, started.id, timeout)
    return ExecutionDetail(**executions.detail(p.cells, p.clock, who, started.id))
