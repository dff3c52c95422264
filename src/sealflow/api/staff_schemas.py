"""Request and response bodies of the staff access routes (I7)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from sealflow.api.schemas import _In
from sealflow.services.staff_access import (
    JUSTIFICATION_MAX,
    JUSTIFICATION_MIN,
    MAX_LIFETIME_MINUTES,
    Grant,
)


class GrantIn(_In):
    account_id: str = Field(min_length=1, max_length=64)
    # Lengths and the lifetime are checked by the service (one clear message naming the
    # field and the limit); the bounds here only cap the work.
    justification: str = Field(
        "", max_length=8 * JUSTIFICATION_MAX,
        description=f"Why access is needed, {JUSTIFICATION_MIN} to {JUSTIFICATION_MAX} "
                    "characters; the customer sees it")
    expires_in_minutes: int = Field(
        description=f"Minutes until the grant ends, 1 to {MAX_LIFETIME_MINUTES} (24 hours), "
                    "counted from the request (an approval does not extend it)")


class GrantReadOut(BaseModel):
    at: datetime
    method: str
    route: str = Field(description="The route's template, e.g. /v1/workflows/{workflow_id}")
    path: str = Field(description="The path asked (without its query)")


class GrantOut(BaseModel):
    id: str = Field(description="Send it as the Sealflow-Access-Grant header to use it")
    account_id: str
    staff_user_id: str
    staff_name: str | None = Field(description="None: no longer a member")
    justification: str
    status: str = Field(description="pending, active, denied, revoked or expired")
    requested_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    revoked_at: datetime | None
    revoked_by: str | None
    reads_total: int = Field(description="Requests made under the grant")
    reads: list[GrantReadOut] = Field(description="The latest requests, newest first")

    @classmethod
    def of(cls, grant: Grant) -> GrantOut:
        fields: dict[str, Any] = {k: getattr(grant, k) for k in cls.model_fields
                                  if k != "reads"}
        return cls(**fields, reads=[GrantReadOut(at=r.at, method=r.method, route=r.route,
                                                 path=r.path) for r in grant.reads])
