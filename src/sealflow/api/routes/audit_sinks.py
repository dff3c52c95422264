"""Audit sinks: stream the account's audit trail to a SIEM (syslog over TLS, or a signed
HTTPS webhook). Admins and owners (audit.manage)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends

from sealflow.api.audit_sink_schemas import NewSinkOut, SinkIn, SinkOut, SinkTestOut
from sealflow.api.deps import PlatformDep
from sealflow.api.errors import ApiError
from sealflow.api.identity_schemas import errors
from sealflow.api.permissions import requires
from sealflow.identity.permissions import Permission
from sealflow.services.accounts import Caller
from sealflow.siem import sinks

router = APIRouter(prefix="/v1/account/audit-sinks", tags=["audit"],
                   responses=errors(401, 403, 429))
Manage = Annotated[Caller, Depends(requires(Permission.AUDIT_MANAGE))]


@router.post("", status_code=201, response_model=NewSinkOut, responses=errors(400, 422))
def create(body: SinkIn, who: Manage, p: PlatformDep) -> NewSinkOut:
    """Adds a sink. A webhook sink's signing key is answered once, here."""
    made = sinks.create(p.cells[who.region], p.clock, who, name=body.name, kind=body.kind,
                        url=body.url, host=body.host, port=body.port,
                        from_start=body.from_start,
                        max_sinks=p.settings.siem.max_sinks_per_account)
    return NewSinkOut(**asdict(made.view), secret=made.secret)


@router.get("", response_model=list[SinkOut])
def list_sinks(who: Manage, p: PlatformDep) -> list[SinkOut]:
    """The account's sinks with their delivery state; never a signing key."""
    return [SinkOut(**asdict(v)) for v in sinks.list_sinks(p.cells[who.region], who)]


@router.get("/{sink_id}", response_model=SinkOut, responses=errors(404))
def read(sink_id: str, who: Manage, p: PlatformDep) -> SinkOut:
    return SinkOut(**asdict(sinks.get(p.cells[who.region], who, sink_id)))


@router.delete("/{sink_id}", status_code=204, responses=errors(404))
def delete(sink_id: str, who: Manage, p: PlatformDep) -> None:
    sinks.delete_sink(p.cells[who.region], p.clock, who, sink_id)


@router.post("/{sink_id}/test", response_model=SinkTestOut, responses=errors(404))
async def test(sink_id: str, who: Manage, p: PlatformDep) -> SinkTestOut:
    """Sends one test message (not an audit record) now and says whether it was accepted."""
    if p.monitor is None:  # a platform built without its monitoring tasks (some tests)
        raise ApiError(503, "audit sink delivery is not running in this process",
                       code="unavailable", retryable=True)
    result = await p.monitor.siem.test(p.cells[who.region], who.account_id, sink_id)
    return SinkTestOut(ok=result.ok, code=result.code, reason=result.reason)
