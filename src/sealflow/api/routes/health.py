"""Liveness, readiness and metrics (A3).

- `/healthz`: the process answers (no dependency checked: a liveness probe that fails on a
  database outage only gets healthy processes restarted).
- `/readyz`: monitoring.health; 503 naming each failing part.
- `/metrics`: Prometheus text format, only with `Authorization: Bearer <metrics.token>`;
  404 while no token is configured, so it is never public by default. Labels hold no
  account ids, e-mails or secrets (monitoring.metrics)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.responses import Response

from sealflow.api.deps import PlatformDep
from sealflow.api.errors import ApiError
from sealflow.api.permissions import public
from sealflow.api.responses import JSONBytes
from sealflow.monitoring.collect import CellCollector
from sealflow.monitoring.health import readiness
from sealflow.monitoring.metrics import metrics as process_metrics

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Depends(public("liveness probe, no data"))])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, str]
    failing: list[str]


@router.get("/readyz", response_model=ReadyOut,
            dependencies=[Depends(public("readiness probe, no account's data"))], responses={
    503: {"model": ReadyOut, "description": "A part this process needs is unavailable: "
                                            "`failing` names it"},
})
def readyz(p: PlatformDep) -> JSONBytes:
    result = readiness(p.cells, p.queue if getattr(p, "_started", False) else None)
    return JSONBytes({"ready": result.ready, "checks": result.checks, "failing": result.failing},
                     status_code=200 if result.ready else 503)


@router.get("/metrics", response_class=Response, dependencies=[Depends(public(
    "its own check: the bearer token of the metrics.token setting; no account's data"))],
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
               401: {"description": "Missing or wrong metrics token"},
               404: {"description": "Metrics are off (no metrics.token configured)"}})
def metrics(p: PlatformDep,
            authorization: Annotated[str | None, Header()] = None) -> Response:
    expected = p.settings.metrics.token.get_secret_value()
    if not expected:
        raise ApiError(404, "metrics are off: set metrics.token (SEALFLOW_METRICS__TOKEN) and "
                       "scrape with that bearer token", code="not_found")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise ApiError(401, "missing or wrong metrics token (Authorization: Bearer <token>)",
                       code="unauthenticated", headers={"WWW-Authenticate": "Bearer"})
    scrape = CollectorRegistry(auto_describe=False)
    scrape.register(CellCollector(p.cells, p.clock, p.queue.in_flight))
    body = generate_latest(process_metrics().registry) + generate_latest(scrape)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
