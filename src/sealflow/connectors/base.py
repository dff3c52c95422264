"""The one seam between the engine and connectors.

A connector is a named set of operations. Each operation declares JSON Schemas for its input
and output and an async handler `handler(input, ctx) -> output`. The engine validates input
and output against the schemas, applies timeouts and retries, and passes every call through
the interceptor chain; a connector only does its own work and raises ConnectorError (with
`retryable` set for third-party failures) when that fails.

Third-party packages add connectors through the `sealflow.connectors` entry point group: the
entry point names a zero-argument callable returning a Connector.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from sealflow.core.secrets import Secret

JSON = Any


@dataclass(frozen=True)
class Credential:
    """An authentication resolved for one step call. `type` is one of api_key, bearer,
    basic, oauth2 (issue 3 stores them); `fields` hold Secret values (and plain, non-secret
    settings such as the header name of an api_key)."""

    id: str
    name: str
    type: str
    fields: Mapping[str, Secret | str]
    # Secrets a connector does not use but redaction must know (an OAuth refresh or id
    # token): they must never be recorded either.
    also_secret: tuple[Secret, ...] = ()

    def secret(self, name: str) -> str:
        value = self.fields[name]
        return value.reveal() if isinstance(value, Secret) else value


class StepContext(Protocol):
    """What a connector may use. Implemented by the engine for each step call."""

    account_id: str
    execution_id: str
    step_name: str
    credential: Credential | None
    timeout_s: float

    def log(self, message: str, **fields: JSON) -> None:
        """Append a line to this step's log (redacted and encrypted by the chain)."""

    def http_client(self) -> httpx.AsyncClient:
        """The outbound client: certificate checks and the SSRF guard (T2) built in."""

    def evaluate(self, expression: str) -> JSON:
        """Evaluate a JSONata expression against {trigger, steps, item, index}."""

    async def sleep(self, seconds: float) -> None:
        """Wait on the engine's clock (tests move it instead of sleeping)."""

    async def call_workflow(self, workflow_id: str, payload: JSON, *, wait: bool) -> JSON:
        """Start another workflow of the same account; with wait, return its result."""

    async def respond(self, status: int, body: JSON, headers: Mapping[str, str]) -> None:
        """Answer the webhook request that started this execution (respond: wait)."""


Handler = Callable[[dict[str, JSON], StepContext], Awaitable[JSON]]


@dataclass(frozen=True)
class Operation:
    name: str
    description: str
    input_schema: Mapping[str, JSON]
    output_schema: Mapping[str, JSON]
    handler: Handler
    # None: the engine's connector_timeout_s limit applies. The http connector sets its own
    # (up to http_timeout_max_s) from its input.
    default_timeout_s: float | None = None


@dataclass(frozen=True)
class Connector:
    name: str
    description: str
    operations: Mapping[str, Operation]
    # Authentication types this connector accepts (S1); empty: it takes none.
    auth_types: tuple[str, ...] = ()
    # Control connectors (branch, switch, loop) shape the graph; the core knows their
    # step-level fields (then/else, cases/default, steps).
    control: str | None = None
    extra: Mapping[str, JSON] = field(default_factory=dict)

    def operation(self, name: str | None) -> Operation | None:
        if name is None:
            if len(self.operations) == 1:
                return next(iter(self.operations.values()))
            return None
        return self.operations.get(name)
