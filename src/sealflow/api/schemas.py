"""Request and response bodies of the REST API (they make /openapi.json)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)
from typing_extensions import TypeAliasType

from sealflow.core.json_values import INT_RANGE as _INT_RANGE
from sealflow.core.json_values import storable_problem as storable_problem

# Values a request body may carry: core.json_values (I-JSON integers, no lone surrogates,
# bounded nesting) says which and checks them.

# The JSON values a body may carry, as documented in /openapi.json: the schema says what
# storable_problem() enforces (integers within 64 bits), so generated clients and schema-based
# fuzzers know it. Validation itself is storable_problem's (one clear message with the path).
JsonValue = TypeAliasType(
    "JsonValue",
    "dict[str, JsonValue] | list[JsonValue] | str | Int64 | float | bool | None",
)
Int64 = Annotated[int, Field(ge=_INT_RANGE[0], le=_INT_RANGE[1])]


def _any_json(value: Any) -> Any:
    return value  # decoded JSON already; _In._storable checks the values


def _definition(value: Any) -> Any:
    if not isinstance(value, dict | str):
        raise ValueError("must be a workflow document (an object) or its JSON/YAML text")
    return value


AnyJson = Annotated[Any, PlainValidator(_any_json, json_schema_input_type=JsonValue)]
DefinitionIn = Annotated[
    Any, PlainValidator(_definition, json_schema_input_type=dict[str, JsonValue] | str)
]


class _In(BaseModel):
    """A request body: unknown fields refused, no coercion (`"wait": 0` is not a boolean),
    every value one the stores can hold."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="after")
    def _storable(self) -> _In:
        for name in type(self).model_fields:
            problem = storable_problem(getattr(self, name), name)
            if problem:
                raise ValueError(f"{problem[0]}: {problem[1]}")
        return self


def _iso_datetime(value: Any) -> Any:
    """Query timestamps must be RFC 3339 text (pydantic alone also takes numbers as epochs)."""
    if isinstance(value, str) and re.match(r"\d{4}-\d{2}-\d{2}[Tt ]", value):
        return value
    if isinstance(value, datetime):
        return value
    raise ValueError("must be an RFC 3339 date-time with an offset, e.g. 2026-01-31T09:00:00Z")


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00: before the first UTC instant
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_datetime), AfterValidator(_to_utc)]


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
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    region: Literal["us", "eu", "apac"] = "us"


class AccountOut(BaseModel):
    id: str
    name: str
    region: str


class AccountCreated(AccountOut):
    token: str = Field(description="The account's API token; shown once, store it now")


_EXAMPLE_WORKFLOW = {
    "name": "Echo",
    "trigger": {"type": "manual"},
    "steps": [{"name": "shape", "connector": "transform",
               "input": {"expression": "{'echo': $.trigger.body}"}}],
}


class WorkflowSave(_In):
    definition: DefinitionIn = Field(
        description="The workflow document, as an object or as JSON/YAML text (docs/workflows.md)."
        " Beyond this shape, the document is validated on save (422 lists every issue).",
        examples=[_EXAMPLE_WORKFLOW],
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
    input: AnyJson = Field(None, description="The trigger body ($.trigger.body)")
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


_ERROR_DESCRIPTIONS = {
    400: "The request body could not be read (not UTF-8, or not parseable)",
    401: "Missing, invalid or revoked API token (or a bad webhook signature)",
    403: "The caller's role lacks the permission this route declares (`forbidden`)",
    404: "No such resource in this account",
    409: "The resource is not in a state that allows this",
    413: "The body is over its limit; `limit` names it",
    422: "Invalid input; `issues` lists every problem with its JSON path",
    429: "Rate limit per account exceeded; retry after the Retry-After header's seconds",
    504: "The workflow did not answer in time; `limit` names the limit",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The documented error responses (one shape: ErrorOut) of a route or router."""
    return {
        code: {"model": ErrorOut, "description": _ERROR_DESCRIPTIONS[code]} for code in codes
    }


# Every /v1 route: authenticated, rate limited, validated; most name a resource.
ERRORS = errors(401, 404, 422, 429)
# Routes that read a JSON body.
BODY_ERRORS = errors(400)


class AccountDelete(_In):
    confirm: str = Field(
        max_length=64,
        description="The id of the account being deleted (GET /v1/account), repeated to "
        "confirm: the deletion destroys the account's keys and cannot be undone",
    )


class AccountDeleted(BaseModel):
    account_id: str
    region: str
    deleted_at: datetime
    removed: dict[str, int] = Field(description="Rows removed, per table")


class RedactionSettings(_In):
    extra_field_names: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=200,
        description="Field names masked in addition to the defaults (password, token, "
        "authorization, ...); case-insensitive")
    disabled_detectors: list[Literal["aws", "github", "slack", "stripe", "jwt", "pem",
                                     "card"]] = Field(
        default_factory=list, description="Token-format detectors turned off for this account")


class LoginSettings(_In):
    require_totp: bool = Field(False, description="Every member must use a second factor")


class StaffSettings(_In):
    require_approval: bool = Field(
        False, description="Platform staff access grants wait for an owner's approval "
        "(changing this needs staff_grants.manage: owners)")


class RetentionSettings(_In):
    executions: str | None = Field(None, description=(
        "How long an execution's raw data (trigger payload, step inputs and outputs, results, "
        "errors) is kept after it finishes: \"10d\", \"36h\", \"1d12h\"; 24h to 10d "
        "(default 10d)"))
    logs: str | None = Field(None, description=(
        "How long the steps' debug logs are kept after the execution finishes: 24h to 30d "
        "(default 30d)"))


class AccountSettings(BaseModel):
    # Not an _In: its sections are _In models themselves, which check their own values.
    model_config = ConfigDict(extra="forbid", strict=True)

    redaction: RedactionSettings | None = None
    login: LoginSettings | None = None
    staff: StaffSettings | None = None
    retention: RetentionSettings | None = None


class AccountSettingsOut(BaseModel):
    redaction: dict[str, Any]
    login: dict[str, Any] = Field(default_factory=dict)
    staff: dict[str, Any] = Field(default_factory=dict)
    retention: dict[str, Any] = Field(default_factory=dict)
