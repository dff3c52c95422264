"""Webhook ingress (W3): an unguessable URL per workflow, an optional HMAC-SHA256 signature
over the raw body, and a queued execution. The HTTP layer enforces the payload limit before
the body reaches this module."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy import bindparam, select

from sealflow.clock import Clock
from sealflow.core.errors import InvalidInput, Issue, NotFound, SealflowError
from sealflow.core.json_values import storable_problem
from sealflow.db.sealed import open_
from sealflow.db.tables import workflows
from sealflow.regions.cells import Cells
from sealflow.services.executions import NewExecution, insert_execution
from sealflow.services.workflows import DefinitionCache

# Request headers a workflow never sees: credentials of the sender and hop-by-hop noise.
_DROPPED_HEADERS = {
    "authorization",
    "cookie",
    "proxy-authorization",
    "x-api-key",
    "connection",
    "content-length",
    "host",
    "transfer-encoding",
}


class BadSignature(SealflowError):
    code = "bad_signature"


@dataclass(frozen=True)
class Accepted:
    execution: NewExecution
    respond_wait: bool


def _body(raw: bytes, content_type: str) -> Any:
    kind = content_type.split(";", 1)[0].strip().lower()
    if not raw:
        return None
    if kind == "application/json" or kind.endswith("+json"):
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError as err:
            raise InvalidInput(
                "the webhook body is not valid JSON", [Issue("$.body", str(err))]
            ) from None
        problem = storable_problem(value, "$.body")
        if problem is not None:
            raise InvalidInput("the webhook body cannot be stored", [Issue(*problem)])
        return value
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return raw.decode("utf-8", "replace")


def _check_signature(secret: str, header_name: str, headers: Mapping[str, str], raw: bytes) -> None:
    given = headers.get(header_name.lower(), "")
    given = given.removeprefix("sha256=")
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    if not given or not hmac.compare_digest(given.lower(), expected):
        raise BadSignature(f"missing or wrong HMAC-SHA256 signature in header {header_name}")


@cache
def _by_token() -> Any:
    return select(
        workflows.c.id,
        workflows.c.account_id,
        workflows.c.current_version,
        workflows.c.webhook_secret,
        workflows.c.enabled,
    ).where(
        workflows.c.webhook_token_hash == bindparam("token_hash"), workflows.c.deleted_at.is_(None)
    )


def receive(
    cells: Cells,
    clock: Clock,
    definitions: DefinitionCache,
    *,
    region: str,
    token: str,
    raw: bytes,
    content_type: str,
    headers: Mapping[str, str],
    query: Mapping[str, str],
    claim: tuple[str, datetime] | None = None,
) -> Accepted:
    """Queue an execution for the webhook `token`. `claim` (lease owner, lease end) inserts
    it already claimed by this process's pool: direct dispatch, no claim round-trip."""
    if region not in cells:
        raise NotFound("unknown webhook")
    cell = cells[region]
    token_hash = hashlib.sha256(token.encode()).hexdigest()
    with cell.write() as conn:
        row = conn.execute(_by_token(), {"token_hash": token_hash}).first()
        if row is None or not row.enabled:
            raise NotFound("unknown webhook")
        definition = definitions.get(cell, conn, row.account_id, row.id, row.current_version)
        trigger = definition.trigger
        if trigger.signature_header is not None:
            if row.webhook_secret is None:
                raise BadSignature("this webhook has no signing secret; save the workflow again")
            secret = open_(
                cell.vault, row.account_id, "workflows", row.id, "webhook_secret",
                row.webhook_secret,
            )
            _check_signature(secret, trigger.signature_header, headers, raw)
        payload = {
            "body": _body(raw, content_type),
            "headers": {k: v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS},
            "query": dict(query),
        }
        execution = insert_execution(
            conn,
            clock,
            cell.vault,
            region=region,
            account_id=row.account_id,
            workflow_id=row.id,
            version=row.current_version,
            trigger_type="webhook",
            payload=payload,
            respond_wait=trigger.respond == "wait",
            lease_owner=claim[0] if claim else None,
            lease_expires_at=claim[1] if claim else None,
        )
    return Accepted(execution, trigger.respond == "wait")
