"""The validated workflow model (docs/workflows.md), the hard caps on a document, and the
issue collector the validators share. Import the model from `sealflow.core.workflows`."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from sealflow.core.errors import InvalidInput, Issue
from sealflow.core.expressions import child_path
from sealflow.core.expressions import kind as kind  # re-exported for the validators
from sealflow.core.json_values import scalar_problem
from sealflow.core.retry import RetryPolicy

# Hard caps on a document, whatever the limits say: they bound the work validation does.
MAX_DOCUMENT_CHARS = 2_000_000
MAX_DEPTH = 64
MAX_NODES = 200_000
MAX_ISSUES = 1_000

TriggerType = Literal["manual", "webhook", "schedule", "callable"]
OnError = Literal["stop", "continue", "branch"]
DEFAULT_SIGNATURE_HEADER = "X-Sealflow-Signature"


@dataclass(frozen=True)
class OperationInfo:
    """What the validator needs to know of a connector operation."""

    connector: str
    operation: str
    input_schema: Mapping[str, Any]
    control: str | None  # "branch" | "switch" | "loop" for the connectors that shape the graph
    accepts_auth: bool
    # The Limits field that caps a step's timeout, when it is not the usual one
    # (http_timeout_max_s for http, connector_timeout_s otherwise): Connector.extra's
    # "timeout_limit", e.g. execution_wall_time_s for delay and call_workflow.
    timeout_limit: str | None = None


class Catalog(Protocol):
    def lookup(self, connector: str, operation: str | None) -> OperationInfo | None:
        """The operation; with operation None, the connector's only operation (else None)."""

    def operations(self, connector: str) -> list[str]:
        """The connector's operation names; [] when the connector is unknown."""


@runtime_checkable
class ListingCatalog(Protocol):
    """Optional: a catalog that can list its connectors gets them named in the error for an
    unknown connector."""

    def connectors(self) -> list[str]: ...


@dataclass(frozen=True)
class Trigger:
    type: TriggerType
    respond: Literal["immediate", "wait"] = "immediate"  # webhook only
    signature_header: str | None = None  # webhook only; set when a signature is required
    cron: str | None = None  # schedule only
    timezone: str = "UTC"  # schedule only (IANA name)
    input: Any = None  # schedule only: the constant trigger body


@dataclass(frozen=True)
class Step:
    name: str
    connector: str
    operation: str  # resolved, also for single-operation connectors
    input: Any
    auth: str | None
    timeout: float | None  # None: the connector's default, capped by the limits
    retry: RetryPolicy
    on_error: OnError
    error_next: str | None  # set exactly when on_error is "branch"
    next: str | None  # explicit next, else the following step in its list, else None (end)
    then: str | None  # branch: when output["result"] is truthy
    else_: str | None  # branch: otherwise
    cases: Mapping[str, str | None]  # switch: output["value"] (as text) -> step
    default: str | None  # switch: no case matched
    body: Graph | None  # loop: the steps run for each item
    control: str | None  # from OperationInfo.control


@dataclass(frozen=True)
class Graph:
    start: str | None  # None only for an empty graph (never at the top level)
    steps: Mapping[str, Step]  # in document order


@dataclass(frozen=True)
class WorkflowDefinition:
    name: str
    description: str
    trigger: Trigger
    graph: Graph
    document: dict[str, Any]  # the normalised document as saved (JSON-serialisable)


class WorkflowInvalid(InvalidInput):
    """The document is not a valid workflow. `issues` holds every problem found, each with
    its JSON path (`$.steps[2].input.url`)."""

    def __init__(self, issues: list[Issue]):
        count = len(issues)
        first = f": {issues[0].path}: {issues[0].message}" if issues else ""
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"invalid workflow{first}{more}", issues)


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for a near miss, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


class Problems:
    """Collects issues; the helpers check the shape of one JSON object."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []

    def add(self, path: str, message: str) -> None:
        if len(self.issues) < MAX_ISSUES:
            self.issues.append(Issue(path, message))
        elif len(self.issues) == MAX_ISSUES:
            self.issues.append(
                Issue("$", f"more than {MAX_ISSUES} problems; the rest are not shown")
            )

    def unknown(self, obj: Mapping[str, Any], path: str, allowed: Iterable[str]) -> bool:
        """Report fields not in `allowed`; True when there were none."""
        allowed = tuple(allowed)
        extra = [k for k in obj if k not in allowed]
        for key in extra:
            hint = suggest(key, allowed) if isinstance(key, str) else ""
            self.add(child_path(path, str(key)), f"unknown field '{key}'{hint}")
        return not extra

    def require(self, obj: Mapping[str, Any], path: str, names: Iterable[str]) -> None:
        for name in names:
            if name not in obj:
                self.add(child_path(path, name), "is required")

    def text(self, obj: Mapping[str, Any], key: str, path: str, max_len: int) -> str | None:
        """obj[key] when it is a non-blank string of at most max_len characters."""
        value = obj.get(key)
        where = child_path(path, key)
        if not isinstance(value, str):
            self.add(where, f"must be a string, found {kind(value)}")
        elif not value.strip():
            self.add(where, "must not be empty")
        elif len(value) > max_len:
            self.add(where, f"must be at most {max_len} characters, found {len(value)}")
        else:
            return value
        return None


def check_document(document: Any) -> list[Issue]:
    """Issues for values JSON cannot hold (non-string keys, dates, NaN…). Raises
    WorkflowInvalid at once for a document past the hard caps (nodes, depth, characters):
    YAML aliases can make a small text a huge tree, and this walk stops early."""
    issues: list[Issue] = []
    nodes = chars = 0
    stack: list[tuple[str, Any, int]] = [("$", document, 1)]
    while stack:
        path, value, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise WorkflowInvalid(
                [Issue("$", f"the document is too large (over {MAX_NODES} values)")]
            )
        if depth > MAX_DEPTH:
            raise WorkflowInvalid(
                [Issue(path, f"the document nests deeper than {MAX_DEPTH} levels")]
            )
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str):
                    chars += len(key)
                    stack.append((child_path(path, key), item, depth + 1))
                else:
                    issues.append(Issue(path, f"key {key} must be a string (quote it in YAML)"))
        elif isinstance(value, list):
            stack.extend((child_path(path, i), v, depth + 1) for i, v in enumerate(value))
        else:
            if isinstance(value, str):
                chars += len(value)
            problem = scalar_problem(value)
            if problem is not None:
                issues.append(Issue(path, problem))
        if chars > MAX_DOCUMENT_CHARS:
            raise WorkflowInvalid(
                [Issue("$", f"the document is too large (over {MAX_DOCUMENT_CHARS} characters)")]
            )
    issues.sort(key=lambda issue: issue.path)
    return issues
