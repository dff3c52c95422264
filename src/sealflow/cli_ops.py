"""Operator operations behind the CLI that span cells (find a workflow or account by id in
whichever region holds it) and the in-process `sealflow run`."""

from __future__ import annotations

import json
from typing import Any

import yaml
from sqlalchemy import select

from sealflow.bootstrap import Platform
from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound
from sealflow.core.json_values import storable_problem
from sealflow.core.workflows import parse_text
from sealflow.db.tables import workflows
from sealflow.engine.records import lease_deadline
from sealflow.queue.embedded import new_owner
from sealflow.regions.cells import Cells
from sealflow.services import account_deletion, executions
from sealflow.services import workflows as workflow_service
from sealflow.services.accounts import Caller, find_account
from sealflow.services.executions import insert_execution, workflow_for_run


def caller_for_workflow(platform: Platform, workflow_id: str) -> Caller:
    for region in platform.cells:
        with platform.cells[region].read() as conn:
            row = conn.execute(
                select(workflows.c.account_id).where(
                    workflows.c.id == workflow_id, workflows.c.deleted_at.is_(None)
                )
            ).first()
        if row is not None:
            return Caller(region=region, account_id=row.account_id, token_id="cli")  # noqa: S106 - not a secret
    raise NotFound(f"workflow {workflow_id} not found in any served region")


async def run_now(platform: Platform, workflow_id: str, payload: Any) -> dict[str, Any]:
    """Insert a manual execution already claimed by this process and run it here."""
    who = caller_for_workflow(platform, workflow_id)
    owner = new_owner()
    with platform.cells[who.region].write() as conn:
        wf = workflow_for_run(conn, who.account_id, workflow_id)
        created = insert_execution(
            conn, platform.clock, platform.cells[who.region].vault, region=who.region,
            account_id=who.account_id,
            workflow_id=workflow_id, version=wf.current_version, trigger_type="manual",
            payload={"body": payload, "headers": {}, "query": {}}, lease_owner=owner,
            lease_expires_at=lease_deadline(platform.clock.now(), platform.settings.worker.lease_s),
        )
    try:
        await platform.runner.run(who.region, created.id, owner)
    finally:
        await platform.outbound.aclose()
    return executions.detail(platform.cells, platform.clock, who, created.id)


def import_workflow(
    platform: Platform, account_id: str, text: str, workflow_id: str | None
) -> dict[str, Any]:
    account = find_account(platform.cells, account_id)
    who = Caller(region=account.region, account_id=account.id, token_id="cli")  # noqa: S106 - not a secret
    document = parse_text(text)
    problem = storable_problem(document)
    if problem:  # e.g. a YAML integer past 2**53: refused with its path, like the API does
        raise InvalidInput(f"invalid workflow: {problem[0]}: {problem[1]}",
                           [Issue(problem[0], problem[1])])
    if workflow_id:
        saved = workflow_service.update_definition(
            platform.cells, platform.clock, platform.registry, platform.limits, who, workflow_id,
            document,
        )
    else:
        saved = workflow_service.create(
            platform.cells, platform.clock, platform.registry, platform.limits, who, document
        )
    view = saved.workflow
    out: dict[str, Any] = {"id": view.id, "name": view.name, "version": view.version,
                           "region": who.region}
    if view.webhook_token:
        base = platform.settings.base_url()
        out["webhook_url"] = f"{base}/hooks/{who.region}/{view.webhook_token}"
    if saved.webhook_secret:
        out["webhook_secret"] = saved.webhook_secret
    return out


def export_workflow(platform: Platform, workflow_id: str, version: int | None, fmt: str) -> str:
    who = caller_for_workflow(platform, workflow_id)
    if version is None:
        version = workflow_service.get(platform.cells, who, workflow_id).version
    document = workflow_service.get_version(platform.cells, who, workflow_id, version)["document"]
    if fmt == "json":
        return json.dumps(document, indent=2)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def delete_account(cells: Cells, clock: Clock, account_id: str) -> dict[str, Any]:
    """`sealflow accounts delete`: the account's region, then the one deletion service (also
    finishes an interrupted deletion, or shows the record of a finished one)."""
    region = account_deletion.locate(cells, account_id)
    record = account_deletion.delete_account(cells, clock, region=region, account_id=account_id)
    return {"account_id": record.account_id, "region": record.region,
            "deleted_at": record.deleted_at, "removed": record.removed}
