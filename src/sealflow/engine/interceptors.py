"""The one interceptor chain every step attempt passes through (DESIGN: decrypt the
authentications it needs, run, redact, encrypt, audit, measure). Security is applied here
once, not remembered in each connector. Later capabilities add an Interceptor to the list
that bootstrap.py builds; nothing else changes.

An interceptor is `async def __call__(call, proceed) -> output`; it may change the call before
proceeding and the output (or the exception) after.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any, Protocol

import jsonschema
import jsonschema_rs
import orjson

from sealflow.connectors.base import Credential, Operation
from sealflow.core.errors import ConnectorError, LimitExceeded
from sealflow.core.expressions import resolve
from sealflow.core.limits import Limits
from sealflow.core.secrets import Secret
from sealflow.core.workflows import Step
from sealflow.db.codec import dumps_bytes
from sealflow.redaction.redactor import Redactor


@dataclass(frozen=True)
class StepCall:
    region: str
    account_id: str
    execution_id: str
    path: str
    step: Step
    operation: Operation
    input: dict[str, Any]
    attempt: int
    ctx: Any  # engine.context.RunStepContext; typed loosely to avoid an import cycle
    credential: Credential | None = None
    auth_types: tuple[str, ...] = ()  # what the step's connector accepts (S1)
    # The execution's redactor: every secret a step uses joins it before the call (S5).
    redactor: Redactor | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


Proceed = Callable[[StepCall], Awaitable[Any]]


class Interceptor(Protocol):
    async def __call__(self, call: StepCall, proceed: Proceed) -> Any: ...


class Chain:
    """Composes interceptors around the connector call, outermost first."""

    def __init__(self, interceptors: Sequence[Interceptor], terminal: Proceed) -> None:
        handler = terminal
        for interceptor in reversed(interceptors):
            handler = _bind(interceptor, handler)
        self._handler = handler

    async def __call__(self, call: StepCall) -> Any:
        return await self._handler(call)


def _bind(interceptor: Interceptor, proceed: Proceed) -> Proceed:
    async def handler(call: StepCall) -> Any:
        return await interceptor(call, proceed)

    return handler


@lru_cache(maxsize=512)
def _validator(schema_json: bytes) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(orjson.loads(schema_json))


@lru_cache(maxsize=512)
def _fast_validator(schema_json: bytes) -> Any:
    """jsonschema-rs (Rust) for the common case, a valid value: ~1 us instead of ~20-30 us.
    The Python validator still explains a failure, so error messages do not change."""
    return jsonschema_rs.validator_for(orjson.loads(schema_json))


def _schema_key(schema: Mapping[str, Any]) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_SORT_KEYS)


class SchemaInterceptor:
    """Checks the resolved input against the operation's input schema before the call and
    the output against its output schema after it. A mismatch is not retryable."""

    def __init__(self) -> None:
        self._keys: dict[int, bytes] = {}

    def _check(self, schema: Mapping[str, Any], value: Any, what: str, step: str) -> None:
        key = self._keys.get(id(schema))
        if key is None:
            key = self._keys[id(schema)] = _schema_key(schema)
        try:
            if _fast_validator(key).is_valid(value):
                return
        except (ValueError, TypeError):  # a value jsonschema-rs cannot read: slow path
            pass
        error = jsonschema.exceptions.best_match(_validator(key).iter_errors(value))
        if error is not None:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.path)
            raise ConnectorError(
                f"step {step}: {what}{where}: {error.message}",
                code=f"invalid_{what}",
                retryable=False,
            )

    async def __call__(self, call: StepCall, proceed: Proceed) -> Any:
        self._check(call.operation.input_schema, call.input, "input", call.step.name)
        output = await proceed(call)
        self._check(call.operation.output_schema, output, "output", call.step.name)
        return output


class CredentialProvider(Protocol):
    """Loads an authentication for a step (services.credentials: the vault decrypts it
    there, and the audit trail records which step of which execution it was for: `used_by`).
    force_refresh: the API refused the OAuth access token; get a new one."""

    async def get(self, region: str, account_id: str, auth_id: str, *,
                  force_refresh: bool = False,
                  used_by: Mapping[str, str] | None = None) -> Credential: ...


OAUTH_TYPES = ("oauth2_code", "oauth2_client")


def _unauthorized(err: ConnectorError) -> bool:
    return err.details.get("status") == 401


def remember_secrets(redactor: Redactor | None, credential: Credential) -> None:
    """Every secret value of the credential (and, for basic, the header form of the pair)
    joins the execution's redactor before a connector can see it, so whatever the step
    records afterwards is masked."""
    if redactor is None:
        return
    for value in (*credential.fields.values(), *credential.also_secret):
        if isinstance(value, Secret):
            redactor.add_secret(credential.name, value.reveal())
    if credential.type == "basic":
        user, password = credential.fields.get("username"), credential.fields.get("password")
        if isinstance(user, Secret) and isinstance(password, Secret):
            redactor.add_basic_pair(credential.name, user.reveal(), password.reveal())


class AuthenticationInterceptor:
    """Resolves the step's authentication and its `$.auth.<field>` references, just before
    the connector call and nowhere else (S1). Values stay Secret objects. An OAuth access
    token the API answers 401 to is refreshed once and the call made again."""

    def __init__(self, provider: CredentialProvider | None) -> None:
        self._provider = provider

    async def __call__(self, call: StepCall, proceed: Proceed) -> Any:
        auth_id = call.step.auth
        if auth_id is None:
            return await proceed(call)
        if self._provider is None:
            raise ConnectorError(
                f"step {call.step.name} names authentication {auth_id!r}, but no "
                "authentication store is configured on this server",
                code="authentication_unavailable",
                retryable=False,
            )
        used_by = {"execution": call.execution_id, "step": call.path}
        credential = await self._provider.get(call.region, call.account_id, auth_id,
                                              used_by=used_by)
        remember_secrets(call.redactor, credential)
        if call.auth_types and credential.type not in call.auth_types:
            raise ConnectorError(
                f"step {call.step.name}: connector {call.step.connector} does not accept "
                f"{credential.type} authentications (it takes {', '.join(call.auth_types)})",
                code="auth_unsupported", retryable=False)
        try:
            return await self._call(call, credential, proceed)
        except ConnectorError as err:
            if credential.type not in OAUTH_TYPES or not _unauthorized(err):
                raise
        credential = await self._provider.get(call.region, call.account_id, auth_id,
                                              force_refresh=True, used_by=used_by)
        remember_secrets(call.redactor, credential)
        return await self._call(call, credential, proceed)

    @staticmethod
    async def _call(call: StepCall, credential: Credential, proceed: Proceed) -> Any:
        resolved = resolve(call.input, {}, auth=credential.fields)
        return await proceed(replace(call, input=resolved, credential=credential))


class OutputLimitInterceptor:
    """Enforces max_step_output_bytes (W5) on what a step returns."""

    def __init__(self, limits: Limits) -> None:
        self._limit = limits.max_step_output_bytes

    async def __call__(self, call: StepCall, proceed: Proceed) -> Any:
        output = await proceed(call)
        size = len(dumps_bytes(output))
        if size > self._limit:
            raise LimitExceeded(
                "max_step_output_bytes",
                self._limit,
                f"step {call.step.name} returned {size} bytes",
            )
        return output


def default_interceptors(
    limits: Limits, credentials: CredentialProvider | None
) -> list[Interceptor]:
    """The chain, outermost first. Issue 4 adds redaction, issue 3 encryption, issue 7 audit
    and metrics here."""
    return [
        SchemaInterceptor(),
        OutputLimitInterceptor(limits),
        AuthenticationInterceptor(credentials),
    ]
