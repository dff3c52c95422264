"""Webhook ingress: POST https://<host>/hooks/<region>/<token>.

The body is read with its limit enforced while streaming (413 naming the limit), the
execution is queued (or dispatched at once to a free worker of this process), and the answer
is either the execution id at once or, for `respond: wait`, what the respond step says."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from sealflow.api.errors import ApiError
from sealflow.api.permissions import public, public_endpoint
from sealflow.api.responses import JSONBytes
from sealflow.api.schemas import ExecutionStarted, errors
from sealflow.api.waiting import wait_for_response
from sealflow.bootstrap import Platform
from sealflow.db import codec
from sealflow.engine.records import lease_deadline
from sealflow.services import webhooks

# With `respond: wait`, the workflow's respond step chooses the status, headers and body.
router = APIRouter(tags=["webhooks"], responses={
    **errors(401, 404, 413, 422, 504),
    "default": {"description": "With respond: wait, what the workflow's respond step answers"},
})

# Headers a respond step may not set: they belong to the transport or to our security policy.
_RESERVED = {"content-length", "transfer-encoding", "connection", "strict-transport-security",
             "content-security-policy", "set-cookie", "server", "date"}


async def _read_body(request: Request, p: Platform) -> bytes:
    limits = p.limits
    multipart = request.headers.get("content-type", "").startswith("multipart/")
    limit = limits.webhook_multipart_bytes if multipart else limits.webhook_payload_bytes
    name = "webhook_multipart_bytes" if multipart else "webhook_payload_bytes"

    def too_large(size: str) -> ApiError:
        return ApiError(413, f"the webhook body is {size} bytes; the limit {name} is {limit}",
                        code="payload_too_large", extra={"limit": name, "limit_value": limit})

    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(f"over {limit}")
        chunks.append(chunk)
    return b"".join(chunks)


_PUBLIC = "webhook ingress: the URL's token (and the signature, if set) is the check"


@public_endpoint(_PUBLIC)
async def receive_route(request: Request) -> Any:
    """The same endpoint as a plain Starlette route placed first in the app's routes: FastAPI's
    route matching and parameter solving cost ~85 us per request, more than the rest of the
    HTTP layer. The FastAPI route below stays for the OpenAPI document."""
    params = request.path_params
    return await receive(params["region"], params["token"], request)


@router.post("/hooks/{region}/{token}", status_code=202, response_model=ExecutionStarted,
             dependencies=[Depends(public(_PUBLIC))])
async def receive(region: str, token: str, request: Request) -> Any:
    p: Platform = request.app.state.platform
    raw = await _read_body(request, p)
    owner = p.queue.reserve()
    claim = (owner, lease_deadline(p.clock.now(), p.settings.worker.lease_s)) if owner else None
    try:
        accepted = webhooks.receive(
            p.cells, p.clock, p.definitions, region=region, token=token, raw=raw,
            content_type=request.headers.get("content-type", ""),
            headers=dict(request.headers), query=dict(request.query_params), claim=claim,
        )
    except BaseException:
        if owner:
            p.queue.release()
        raise
    execution_id = accepted.execution.id
    if owner:
        p.queue.start_reserved(region, execution_id, accepted.execution.row)
    else:
        p.queue.submit(region, execution_id)
    if not accepted.respond_wait:
        return JSONBytes({"execution_id": execution_id, "status": "queued"}, status_code=202)
    timeout = p.limits.webhook_reply_timeout_s
    answer = await wait_for_response(p, region, execution_id, timeout, local=owner is not None)
    if answer is None:
        raise ApiError(
            504, f"the workflow did not answer within {timeout} s (limit webhook_reply_timeout_s); "
            f"execution {execution_id} goes on", code="reply_timeout", retryable=False,
            extra={"limit": "webhook_reply_timeout_s", "execution_id": execution_id},
        )
    headers = {k: str(v) for k, v in (answer.get("headers") or {}).items()
               if k.lower() not in _RESERVED}
    body = answer.get("body")
    if isinstance(body, str):
        headers.setdefault("content-type", "text/plain; charset=utf-8")
        return Response(body, status_code=answer.get("status", 200), headers=headers)
    headers.setdefault("content-type", "application/json")
    return Response(codec.dumps_bytes(body), status_code=answer.get("status", 200), headers=headers)
