"""Workflows: validate on save, every save a new version (W2).

Sealed at rest (db.sealed, S6): version documents (bound to `<workflow_id>/v<version>`, their
autoincrement id being unknown before insert), the webhook token (looked up by its hash,
sealed so the URL can still be shown) and the signing secret (bound to the workflow id)."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from sealflow.audit.records import Action
from sealflow.clock import Clock
from sealflow.core.definitions import Graph, WorkflowInvalid
from sealflow.core.errors import Issue, NotFound
from sealflow.core.limits import Limits
from sealflow.core.workflows import Catalog, WorkflowDefinition, parse_text, validate
from sealflow.db.sealed import open_, seal
from sealflow.db.tables import schedule_state, workflow_versions, workflows
from sealflow.redaction.redactor import Redactor
from sealflow.regions.cells import Cell, Cells
from sealflow.services import storage_lifetimes
from sealflow.services.account_settings import policy_for
from sealflow.services.accounts import Caller
from sealflow.services.audited import by_caller
from sealflow.services.authentications import usable_ids
from sealflow.vault.vault import Vault


@dataclass(frozen=True)
class WorkflowView:
    id: str
    name: str
    version: int
    trigger_type: str
    enabled: bool
    webhook_token: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class SavedWorkflow:
    workflow: WorkflowView
    definition: WorkflowDefinition
    # Returned once, when a signed webhook is first saved; never again.
    webhook_secret: str | None = None


def to_definition(source: Any, catalog: Catalog, limits: Limits) -> WorkflowDefinition:
    """Parse (JSON or YAML text, or an already-decoded document) and validate."""
    document = parse_text(source) if isinstance(source, str) else source
    return validate(document, catalog, limits)


def auth_references(graph: Graph, path: str = "$.steps") -> list[tuple[str, str]]:
    """(JSON path of the step's `auth`, authentication id) for every step, loops included."""
    found: list[tuple[str, str]] = []
    for index, step in enumerate(graph.steps.values()):
        if step.auth is not None:
            found.append((f"{path}[{index}].auth", step.auth))
        if step.body is not None:
            found += auth_references(step.body, f"{path}[{index}].steps")
    return found


def _check_auth_references(conn: Connection, caller: Caller, definition: WorkflowDefinition
                           ) -> None:
    """A workflow may name only authentications its saver may use (shared ones, and its own
    personal ones); checked at every save, so a run never needs to know who saved it."""
    references = auth_references(definition.graph)
    usable = usable_ids(conn, caller, {auth_id for _, auth_id in references})
    issues = [Issue(where, f"no authentication {auth_id!r} you may use in this account")
              for where, auth_id in references if auth_id not in usable]
    if issues:
        raise WorkflowInvalid(issues)


def _version_row_id(workflow_id: str, version: int) -> str:
    return f"{workflow_id}/v{version}"


def _view(vault: Vault, row: Any) -> WorkflowView:
    return WorkflowView(
        id=row.id,
        name=row.name,
        version=row.current_version,
        trigger_type=row.trigger_type,
        enabled=row.enabled,
        webhook_token=open_(
            vault, row.account_id, "workflows", row.id, "webhook_token", row.webhook_token
        ),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _load(conn: Connection, caller: Caller, workflow_id: str) -> Any:
    row = conn.execute(
        select(workflows).where(
            workflows.c.id == workflow_id,
            workflows.c.account_id == caller.account_id,
            workflows.c.deleted_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound(f"workflow {workflow_id} not found")
    return row


def create(
    cells: Cells, clock: Clock, catalog: Catalog, limits: Limits, caller: Caller, source: Any
) -> SavedWorkflow:
    definition = to_definition(source, catalog, limits)
    now = clock.now()
    workflow_id = str(uuid.uuid4())
    vault = cells[caller.region].vault
    with cells[caller.region].write() as conn:
        _check_auth_references(conn, caller, definition)
        conn.execute(
            insert(workflows).values(
                id=workflow_id,
                account_id=caller.account_id,
                name=definition.name,
                current_version=1,
                trigger_type=definition.trigger.type,
                enabled=True,
                created_at=now,
                updated_at=now,
            )
        )
        secret = _apply_trigger(conn, vault, caller, workflow_id, definition, now, previous=None)
        _insert_version(conn, vault, caller, workflow_id, 1, definition, now)
        by_caller(cells[caller.region], conn, caller, Action.WORKFLOW_CREATED,
                  f"workflow:{workflow_id}", now, version=1, trigger=definition.trigger.type)
        row = _load(conn, caller, workflow_id)
    return SavedWorkflow(_view(vault, row), definition, secret)


def update_definition(
    cells: Cells,
    clock: Clock,
    catalog: Catalog,
    limits: Limits,
    caller: Caller,
    workflow_id: str,
    source: Any,
) -> SavedWorkflow:
    definition = to_definition(source, catalog, limits)
    now = clock.now()
    vault = cells[caller.region].vault
    with cells[caller.region].write() as conn:
        row = _load(conn, caller, workflow_id)
        _check_auth_references(conn, caller, definition)
        version = row.current_version + 1
        secret = _apply_trigger(conn, vault, caller, workflow_id, definition, now, previous=row)
        _insert_version(conn, vault, caller, workflow_id, version, definition, now)
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(
                name=definition.name,
                current_version=version,
                trigger_type=definition.trigger.type,
                updated_at=now,
            )
        )
        by_caller(cells[caller.region], conn, caller, Action.WORKFLOW_CHANGED,
                  f"workflow:{workflow_id}", now, version=version,
                  trigger=definition.trigger.type)
        row = _load(conn, caller, workflow_id)
    return SavedWorkflow(_view(vault, row), definition, secret)


def _insert_version(
    conn: Connection,
    vault: Vault,
    caller: Caller,
    workflow_id: str,
    version: int,
    definition: WorkflowDefinition,
    now: datetime,
) -> None:
    conn.execute(
        insert(workflow_versions).values(
            workflow_id=workflow_id,
            account_id=caller.account_id,
            version=version,
            document=seal(
                vault,
                caller.account_id,
                "workflow_versions",
                _version_row_id(workflow_id, version),
                "document",
                definition.document,
            ),
            created_at=now,
        )
    )


def _apply_trigger(
    conn: Connection,
    vault: Vault,
    caller: Caller,
    workflow_id: str,
    definition: WorkflowDefinition,
    now: datetime,
    previous: Any,
) -> str | None:
    """Keep the webhook token, signing secret and schedule state in step with the trigger.
    Returns a newly generated signing secret (shown once), else None."""
    trigger = definition.trigger
    values: dict[str, Any] = {}
    new_secret = None
    if trigger.type == "webhook":
        if previous is None or previous.webhook_token is None:
            token = secrets.token_urlsafe(32)
            values.update(
                webhook_token=seal(
                    vault, caller.account_id, "workflows", workflow_id, "webhook_token", token
                ),
                webhook_token_hash=hashlib.sha256(token.encode()).hexdigest(),
            )
        wants_secret = trigger.signature_header is not None
        has_secret = previous is not None and previous.webhook_secret is not None
        if wants_secret and not has_secret:
            new_secret = "whsec_" + secrets.token_urlsafe(32)
            values["webhook_secret"] = seal(
                vault, caller.account_id, "workflows", workflow_id, "webhook_secret", new_secret
            )
        elif not wants_secret and has_secret:
            values["webhook_secret"] = None
    elif previous is not None and previous.webhook_token is not None:
        values.update(webhook_token=None, webhook_token_hash=None, webhook_secret=None)
    if values:
        conn.execute(update(workflows).where(workflows.c.id == workflow_id).values(**values))

    conn.execute(delete(schedule_state).where(schedule_state.c.workflow_id == workflow_id))
    if trigger.type == "schedule":
        # Start counting ticks from now: a new schedule never fires for the past.
        conn.execute(
            insert(schedule_state).values(
                workflow_id=workflow_id, account_id=caller.account_id, last_tick=now
            )
        )
    return new_secret


def get(cells: Cells, caller: Caller, workflow_id: str) -> WorkflowView:
    with cells[caller.region].read() as conn:
        row = _load(conn, caller, workflow_id)
    return _view(cells[caller.region].vault, row)


def list_workflows(cells: Cells, caller: Caller, *, limit: int, offset: int) -> list[WorkflowView]:
    with cells[caller.region].read() as conn:
        rows = conn.execute(
            select(workflows)
            .where(workflows.c.account_id == caller.account_id, workflows.c.deleted_at.is_(None))
            .order_by(workflows.c.created_at, workflows.c.id)
            .limit(limit)
            .offset(offset)
        ).all()
    return [_view(cells[caller.region].vault, r) for r in rows]


def get_version(cells: Cells, caller: Caller, workflow_id: str, version: int) -> dict[str, Any]:
    with cells[caller.region].read() as conn:
        _load(conn, caller, workflow_id)
        row = conn.execute(
            select(workflow_versions).where(
                workflow_versions.c.workflow_id == workflow_id,
                workflow_versions.c.account_id == caller.account_id,
                workflow_versions.c.version == version,
            )
        ).first()
    if row is None:
        raise NotFound(f"version {version} of workflow {workflow_id} not found")
    document = open_(cells[caller.region].vault, caller.account_id, "workflow_versions",
                     _version_row_id(workflow_id, version), "document", row.document)
    redactor = Redactor(policy_for(cells[caller.region], caller.account_id))
    return {"version": row.version, "created_at": row.created_at,
            "document": redact_document(redactor, document)}


def redact_document(redactor: Redactor, document: Any) -> Any:
    """A workflow document as shown or exported (S5): a secret pasted into it as a literal is
    masked (by field name, token format or card number), while references and templates
    (`$.auth.token`, `Bearer {{ $.auth.token }}`) are kept, so the export still imports."""
    if isinstance(document, dict):
        out = {}
        for key, value in document.items():
            if isinstance(value, str) and ("$." in value or "{{" in value):
                out[key] = value
            elif isinstance(value, dict | list):
                out[key] = redact_document(redactor, value)
            else:
                out[key] = next(iter(redactor.value({key: value}).values()))
        return out
    if isinstance(document, list):
        return [redact_document(redactor, v) for v in document]
    return redactor.value(document)


def list_versions(cells: Cells, caller: Caller, workflow_id: str) -> list[dict[str, Any]]:
    with cells[caller.region].read() as conn:
        _load(conn, caller, workflow_id)
        rows = conn.execute(
            select(workflow_versions.c.version, workflow_versions.c.created_at)
            .where(
                workflow_versions.c.workflow_id == workflow_id,
                workflow_versions.c.account_id == caller.account_id,
            )
            .order_by(workflow_versions.c.version)
        ).all()
    return [{"version": r.version, "created_at": r.created_at} for r in rows]


def delete_workflow(cells: Cells, clock: Clock, caller: Caller, workflow_id: str) -> None:
    with cells[caller.region].write() as conn:
        _load(conn, caller, workflow_id)
        conn.execute(
            update(workflows)
            .where(workflows.c.id == workflow_id)
            .values(
                deleted_at=clock.now(),
                enabled=False,
                webhook_token=None,
                webhook_token_hash=None,
                webhook_secret=None,
            )
        )
        conn.execute(delete(schedule_state).where(schedule_state.c.workflow_id == workflow_id))
        # D2: the workflow's storage scope goes with it.
        storage_lifetimes.delete_scope(conn, caller.account_id, "workflow", workflow_id)
        by_caller(cells[caller.region], conn, caller, Action.WORKFLOW_DELETED,
                  f"workflow:{workflow_id}", clock.now())


def count(cells: Cells, caller: Caller) -> int:
    with cells[caller.region].read() as conn:
        return int(
            conn.execute(
                select(func.count()).where(
                    workflows.c.account_id == caller.account_id, workflows.c.deleted_at.is_(None)
                )
            ).scalar_one()
        )


class DefinitionCache:
    """Validated definitions by (region, workflow id, version). Versions never change once
    saved, so entries never go stale; the cache is bounded."""

    def __init__(self, catalog: Catalog, limits: Limits, size: int = 512) -> None:
        self._catalog = catalog
        self._limits = limits
        self._size = size
        self._entries: OrderedDict[tuple[str, str, int], WorkflowDefinition] = OrderedDict()

    def peek(self, cell: Cell, workflow_id: str, version: int) -> WorkflowDefinition | None:
        """The cached definition, or None (then `get` reads it)."""
        return self._entries.get((cell.region, workflow_id, version))

    def get(
        self, cell: Cell, conn: Connection, account_id: str, workflow_id: str, version: int
    ) -> WorkflowDefinition:
        key = (cell.region, workflow_id, version)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
            return found
        row = conn.execute(
            select(workflow_versions.c.document).where(
                workflow_versions.c.workflow_id == workflow_id,
                workflow_versions.c.account_id == account_id,
                workflow_versions.c.version == version,
            )
        ).first()
        if row is None:
            raise NotFound(f"version {version} of workflow {workflow_id} not found")
        document = open_(
            cell.vault,
            account_id,
            "workflow_versions",
            _version_row_id(workflow_id, version),
            "document",
            row.document,
        )
        definition = validate(document, self._catalog, self._limits)
        self._entries[key] = definition
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return definition

    def forget_account(self, region: str, workflow_ids: list[str]) -> int:
        """Drops the cached definitions of a deleted account's workflows, so no decrypted
        document of it stays in memory. Entries are keyed by workflow, not account: the
        caller lists the account's workflow ids. Returns how many entries went."""
        ids = set(workflow_ids)
        gone = [key for key in list(self._entries) if key[0] == region and key[1] in ids]
        for key in gone:
            del self._entries[key]
        return len(gone)
