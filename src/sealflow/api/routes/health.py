"""Liveness and readiness (A3 extends these with the key provider and metrics)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel
from sqlalchemy import text

from sealflow.api.deps import PlatformDep
from sealflow.api.permissions import public
from sealflow.api.responses import JSONBytes

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Depends(public("liveness probe, no data"))])
def healthz() -> dict[str, str]:
    return {"status": "ok"}


class ReadyOut(BaseModel):
    ready: bool
    checks: dict[str, str]


@router.get("/readyz", response_model=ReadyOut,
            dependencies=[Depends(public("readiness probe, no account's data"))], responses={
    503: {"model": ReadyOut, "description": "A store of a served region is unavailable"},
})
def readyz(p: PlatformDep) -> JSONBytes:
    checks: dict[str, str] = {}
    for region in p.cells:
        try:
            with p.cells[region].read() as conn:
                conn.execute(text("SELECT 1"))
            checks[f"database:{region}"] = "ok"
        except Exception as exc:  # reported, not raised
            checks[f"database:{region}"] = f"unavailable ({type(exc).__name__})"
    ready = all(v == "ok" for v in checks.values())
    return JSONBytes({"ready": ready, "checks": checks}, status_code=200 if ready else 503)
