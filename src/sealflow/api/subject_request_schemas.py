"""Request and response bodies of the data subject requests' routes (D5)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from sealflow.api.schemas import Timestamp, _In
from sealflow.core.json_values import storable_problem
from sealflow.services.subject_requests import REJECT_REASONS, SubjectRequest

RejectReason = Literal["identity_not_verified", "manifestly_unfounded", "excessive",
                       "legal_obligation", "withdrawn"]
assert set(RejectReason.__args__) == set(REJECT_REASONS)  # type: ignore[attr-defined]


class SubjectRequestIn(_In):
    kind: Literal["export", "erasure"]
    law: Literal["gdpr", "ccpa"] = Field(
        "gdpr", description="Sets the due date: GDPR 30 days, CCPA 45 days from receipt")
    email: str = Field(min_length=3, max_length=320, description="The member's e-mail address")
    # Not strict: RFC 3339 text is how JSON carries a time (Timestamp refuses numbers).
    received_at: Timestamp | None = Field(
        None, strict=False,
        description="When the request was received, if before now (at most a year ago)")

    @model_validator(mode="after")
    def _storable(self) -> SubjectRequestIn:
        """_In's check (it replaces it, by name), but for received_at: a time, not JSON."""
        problem = storable_problem(self.email, "email")
        if problem:
            raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


# IPv4 dotted quad, or IPv6 (hex groups and colons, an embedded IPv4 allowed); the service
# parses it (422 naming the entry when it is no address after all).
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_ADDRESS = rf"^(?:{_OCTET}\.){{3}}{_OCTET}$|^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*$"


class RunIn(_In):
    addresses: list[Annotated[str, Field(min_length=2, max_length=45, pattern=_ADDRESS)]] = Field(
        default_factory=list, max_length=20, description=(
            "Erasure: IP addresses the person says they used; what is kept under them (log "
            "lines, throttling rows) goes too. Not stored. The addresses of their logins are "
            "found without them"))


class RejectIn(_In):
    reason: RejectReason


class SubjectRequestOut(BaseModel):
    id: str
    kind: str
    law: str
    member_id: str
    member_email: str | None = Field(
        description="The member's e-mail while they are a member; null once erased")
    status: Literal["received", "in_progress", "completed", "rejected"]
    requested_by: str = Field(description="user:<id>, token:<id> or operator:cli")
    received_at: datetime
    due_at: datetime
    completed_at: datetime | None
    overdue: bool = Field(description="Open (received or in progress) and past its due date")
    outcome: dict[str, Any] | None = Field(
        description="Counts of what was exported or removed, or the rejection's reason")

    @classmethod
    def of(cls, r: SubjectRequest) -> SubjectRequestOut:
        return cls(id=r.id, kind=r.kind, law=r.law, member_id=r.member_id,
                   member_email=r.member_email, status=r.status,
                   requested_by=r.requested_by, received_at=r.received_at, due_at=r.due_at,
                   completed_at=r.completed_at, overdue=r.overdue, outcome=r.outcome)
