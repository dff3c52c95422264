"""Request and response bodies of the REST API (they make /openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class IssueOut(BaseModel):
    path: str
    message: str


class ErrorBody(BaseModel):
    code: str
    message: str
    retryable: bool
    issues: list[IssueOut] | None = None
    limit: str | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class AccountCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    region: Literal["us", "eu", "apac"] = "us"


class AccountOut(BaseModel):
    id: str
    name: str
    region: str


class AccountCreated(AccountOut):
    token: str = Field(description="The account's API token; shown once, store it now")


class WorkflowSave(_In):
    definition: dict[str, Any] | str = Field(
        description="The workflow document, as an object or as JSON/YAML text (docs/workflows.md)"
    )


class WorkflowOut(BaseModel):
    id: str
    name: str
    version: int
    trigger_type: str
    enabled: bool
    webhook_url: str | None = None
    created_at: datetime
    updated_at: datetime


class WorkflowSaved(WorkflowOut):
    webhook_secret: str | None = Field(
        None, description="HMAC-SHA256 signing secret of a signed webhook; shown once"
    )


class VersionOut(BaseModel):
    version: int
    created_at: datetime


class VersionDocument(VersionOut):
    document: dict[str, Any]


class ValidationOut(BaseModel):
    valid: bool
    issues: list[IssueOut]


class RunRequest(_In):
    input: Any = None
    wait: bool = Field(False, description="Wait for the execution to end and return it")
    timeout_s: float | None = Field(
        None, gt=0, description="With wait: at most this long (capped by webhook_reply_timeout_s)"
    )


class StepOut(BaseModel):
    path: str
    name: str
    connector: str
    operation: str
    status: str
    attempts: int
    duration_ms: float | None
    started_at: datetime
    finished_at: datetime | None
    input: Any = None
    output: Any = None
    error: dict[str, Any] | None = None
    logs: list[dict[str, Any]] = []
    next: str | None = None


class ExecutionSummary(BaseModel):
    id: str
    workflow_id: str
    workflow_version: int
    status: str
    trigger_type: str
    parent_id: str | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: dict[str, Any] | None = None


class ExecutionDetail(ExecutionSummary):
    trigger: Any = None
    result: Any = None
    response: Any = None
    platform_attempts: int = 0
    steps: list[StepOut] = []


class ExecutionStarted(BaseModel):
    execution_id: str
    status: str


class CancelOut(BaseModel):
    execution_id: str
    status: str


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (401, 404, 409, 413, 422, 429)
}
