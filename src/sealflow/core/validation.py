"""Reading a workflow document field by field: the trigger, and each step into a `_Node`.

`workflows.validate` drives it, then checks what needs every step name known (edges,
cycles, references, input schemas). The walk keeps going after a problem so that one save
reports all of them, each at its JSON path.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, cast

from croniter import croniter

from sealflow.core.definitions import (
    DEFAULT_SIGNATURE_HEADER,
    Catalog,
    ListingCatalog,
    OperationInfo,
    Problems,
    Trigger,
    is_number,
    kind,
    suggest,
)
from sealflow.core.expressions import child_path
from sealflow.core.limits import Limits
from sealflow.core.retry import RETRY_FIELDS, RetryPolicy, policy_from_document, policy_issues

NAME_RE = re.compile(r"[a-z][a-z0-9_]{0,63}")
STEP_FIELDS = (
    "name", "description", "connector", "operation", "auth", "input", "timeout", "retry",
    "on_error", "error_next", "next", "then", "else", "cases", "default", "steps",
)  # fmt: skip
CONTROL_FIELDS = {
    "then": "branch", "else": "branch", "cases": "switch", "default": "switch", "steps": "loop",
}  # fmt: skip
ON_ERROR = ("stop", "continue", "branch")
HEADER_RE = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}")
TRIGGER_TYPES = ("manual", "webhook", "schedule", "callable")
TRIGGER_FIELDS = ("type", "respond", "signature", "cron", "timezone", "input")
TRIGGER_ONLY = {
    "respond": "webhook", "signature": "webhook",
    "cron": "schedule", "timezone": "schedule", "input": "schedule",
}  # fmt: skip


class _Absent(Enum):
    ABSENT = 0


ABSENT = _Absent.ABSENT


@dataclass(eq=False)
class _List:
    path: str  # "$.steps" or "<loop step path>.steps"
    owner: _Node | None = None  # the loop step whose body this is
    parent: _List | None = None
    nodes: list[_Node] = field(default_factory=list)
    by_name: dict[str, _Node] = field(default_factory=dict)
    start: str | None = None
    preds: dict[str, set[str]] | None = None  # reversed edges, built on demand


@dataclass(eq=False)
class _Node:
    path: str
    raw: Mapping[str, Any]
    lst: _List
    name: str | None = None
    connector: str | None = None
    info: OperationInfo | None = None
    input: Any = None
    auth: str | None = None
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    on_error: str = "stop"
    error_next: str | None = None
    explicit: dict[str, str | None] = field(default_factory=dict)  # next/then/else/default
    cases: dict[str, str | None] = field(default_factory=dict)
    body: _List | None = None
    next: str | None = None  # resolved
    targets: dict[str, str | None] = field(default_factory=dict)  # resolved then/else/default
    edges: list[tuple[str, str]] = field(default_factory=list)  # (field path, valid target)
    ancestors: set[str] | None = None

    @property
    def control(self) -> str | None:
        return self.info.control if self.info else None


class StepGraph:
    """Reads the step lists of one workflow (loop bodies included) into `_List`s."""

    def __init__(self, problems: Problems, catalog: Catalog, limits: Limits) -> None:
        self.p = problems
        self.catalog = catalog
        self.limits = limits
        self.names: dict[str, str] = {}  # every step name of the workflow -> its path
        self.count = 0

    # -- reading ---------------------------------------------------------------------------

    def read(self, raw: Any, lst: _List) -> None:
        if not isinstance(raw, list):
            self.p.add(lst.path, f"must be a list of steps, found {kind(raw)}")
            return
        if not raw:
            self.p.add(lst.path, "needs at least one step")
        self.count += len(raw)
        for i, item in enumerate(raw):
            lst.nodes.append(self._step(item, f"{lst.path}[{i}]", lst))

    def _step(self, raw: Any, path: str, lst: _List) -> _Node:
        if not isinstance(raw, dict):
            self.p.add(path, f"a step must be an object, found {kind(raw)}")
            return _Node(path, {}, lst)
        node = _Node(path, raw, lst, input=raw.get("input", {}))
        self.p.unknown(raw, path, STEP_FIELDS)
        self.p.require(raw, path, ("name", "connector"))
        if "name" in raw:
            self._name(node, raw["name"])
        if "description" in raw:
            self.p.text(raw, "description", path, 10_000)
        if "connector" in raw:
            node.info = self._operation(node, raw["connector"], raw.get("operation"))
        self._auth(node)
        self._timeout(node)
        self._retry(node)
        self._on_error(node)
        self._control_fields(node)
        return node

    def _name(self, node: _Node, name: Any) -> None:
        where = child_path(node.path, "name")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            self.p.add(
                where,
                f"invalid step name {name!r}: 1-64 characters, a lowercase letter first, "
                "then lowercase letters, digits or _",
            )
        elif name in self.names:
            self.p.add(where, f"duplicate step name '{name}' (already used at {self.names[name]})")
        else:
            self.names[name] = node.path
            node.name = name
            node.lst.by_name[name] = node

    def _operation(self, node: _Node, connector: Any, operation: Any) -> OperationInfo | None:
        where = child_path(node.path, "connector")
        if not isinstance(connector, str) or not connector:
            self.p.add(where, f"must be a connector name, found {kind(connector)}")
            return None
        node.connector = connector
        ops = self.catalog.operations(connector)
        if not ops:
            known = (
                sorted(self.catalog.connectors())
                if isinstance(self.catalog, ListingCatalog)
                else []
            )
            listing = f"; known connectors: {', '.join(known)}" if known else ""
            self.p.add(
                where, f"unknown connector '{connector}'{suggest(connector, known)}{listing}"
            )
            return None
        op_path = child_path(node.path, "operation")
        if operation is not None:
            if not isinstance(operation, str):
                self.p.add(op_path, f"must be a string, found {kind(operation)}")
                return None
            if operation not in ops:
                self.p.add(
                    op_path,
                    f"unknown operation '{operation}' of connector '{connector}'"
                    f"{suggest(operation, ops)}; its operations: {', '.join(ops)}",
                )
                return None
        elif len(ops) > 1:
            self.p.add(
                op_path, f"is required: connector '{connector}' has operations {', '.join(ops)}"
            )
            return None
        info = self.catalog.lookup(connector, operation)
        if info is None and operation is None:
            info = self.catalog.lookup(connector, ops[0])
        if info is None:
            self.p.add(where, f"connector '{connector}' did not describe its operation")
        return info

    def _auth(self, node: _Node) -> None:
        value = node.raw.get("auth")
        if value is None:
            return
        where = child_path(node.path, "auth")
        if not isinstance(value, str) or not value.strip():
            self.p.add(where, f"must be an authentication id, found {kind(value)}")
        elif node.info is not None and not node.info.accepts_auth:
            self.p.add(where, f"connector '{node.connector}' takes no authentication")
        else:
            node.auth = value

    def _timeout(self, node: _Node) -> None:
        value = node.raw.get("timeout")
        if value is None:
            return
        where = child_path(node.path, "timeout")
        limit_name = "http_timeout_max_s" if node.connector == "http" else "connector_timeout_s"
        if node.info is not None and isinstance(
            getattr(self.limits, node.info.timeout_limit or "", None), int | float
        ):
            limit_name = cast(str, node.info.timeout_limit)
        limit = float(getattr(self.limits, limit_name))
        if not is_number(value):
            self.p.add(where, f"must be a number of seconds, found {kind(value)}")
        elif value <= 0:
            self.p.add(where, f"must be greater than 0, got {value}")
        elif value > limit:
            self.p.add(where, f"timeout {value:g} s is over the limit {limit_name}={limit:g}")
        else:
            node.timeout = float(value)

    def _retry(self, node: _Node) -> None:
        value = node.raw.get("retry")
        if value is None:
            return
        where = child_path(node.path, "retry")
        if not isinstance(value, dict):
            self.p.add(where, f"must be an object, found {kind(value)}")
            return
        clean = self.p.unknown(value, where, RETRY_FIELDS)
        problems = policy_issues(value)
        for name, message in problems:
            self.p.add(child_path(where, name), message)
        if clean and not problems:
            node.retry = policy_from_document(value)

    def _on_error(self, node: _Node) -> None:
        raw = node.raw
        value = raw.get("on_error", "stop")
        where = child_path(node.path, "error_next")
        if value not in ON_ERROR:
            hint = suggest(value, ON_ERROR) if isinstance(value, str) else ""
            self.p.add(
                child_path(node.path, "on_error"), f"must be one of stop, continue, branch{hint}"
            )
            return
        node.on_error = value
        target = raw.get("error_next")
        if value != "branch":
            if "error_next" in raw:
                self.p.add(where, "is only used with on_error: branch")
        elif target is None:
            self.p.add(where, "is required when on_error is branch")
        elif not isinstance(target, str):
            self.p.add(where, f"must be a step name, found {kind(target)}")
        else:
            node.error_next = target

    def _control_fields(self, node: _Node) -> None:
        raw, known, control = node.raw, node.info is not None, node.control
        for name, needed in CONTROL_FIELDS.items():
            if name in raw and known and control != needed:
                self.p.add(child_path(node.path, name), f"'{name}' is only used on {needed} steps")
        for name in ("next", "then", "else", "default"):
            if name in raw and (name == "next" or not known or control == CONTROL_FIELDS[name]):
                value = raw[name]
                if value is None or isinstance(value, str):
                    node.explicit[name] = value
                else:
                    self.p.add(
                        child_path(node.path, name),
                        f"must be a step name or null, found {kind(value)}",
                    )
        if control == "switch" or (not known and "cases" in raw):
            self._cases(node, raw.get("cases", ABSENT))
        if control == "loop" or (not known and "steps" in raw):
            body_path = child_path(node.path, "steps")
            if "steps" not in raw:
                self.p.add(body_path, "is required on loop steps: the body run for each item")
            else:
                node.body = _List(body_path, owner=node, parent=node.lst)
                self.read(raw["steps"], node.body)

    def _cases(self, node: _Node, cases: Any) -> None:
        where = child_path(node.path, "cases")
        if cases is ABSENT:
            self.p.add(where, "is required on switch steps")
        elif not isinstance(cases, dict) or not cases:
            self.p.add(where, "must be an object mapping values to step names")
        else:
            for key, value in cases.items():
                if value is None or isinstance(value, str):
                    node.cases[key] = value
                else:
                    self.p.add(
                        child_path(where, key), f"must be a step name or null, found {kind(value)}"
                    )


def read_trigger(p: Problems, raw: Any, path: str = "$.trigger") -> Trigger | None:
    """The trigger, or None after reporting why it is not valid."""
    if not isinstance(raw, dict):
        p.add(path, f"must be an object, found {kind(raw)}")
        return None
    before = len(p.issues)
    p.unknown(raw, path, TRIGGER_FIELDS)
    ttype = raw.get("type")
    if ttype not in TRIGGER_TYPES:
        hint = suggest(ttype, TRIGGER_TYPES) if isinstance(ttype, str) else ""
        message = (
            "is required" if "type" not in raw else f"must be one of {', '.join(TRIGGER_TYPES)}"
        )
        p.add(child_path(path, "type"), message + hint)
        return None
    for name, only in TRIGGER_ONLY.items():
        if name in raw and ttype != only:
            p.add(child_path(path, name), f"'{name}' is only used on {only} triggers")
    respond = raw.get("respond", "immediate")
    if respond not in ("immediate", "wait"):
        p.add(child_path(path, "respond"), "must be immediate or wait")
    header = _signature(p, raw.get("signature"), child_path(path, "signature"))
    cron, timezone = raw.get("cron"), raw.get("timezone", "UTC")
    if ttype == "schedule":
        _cron(p, raw, child_path(path, "cron"))
        _timezone(p, timezone, child_path(path, "timezone"))
    if len(p.issues) > before:
        return None
    return Trigger(
        type=ttype,
        respond=respond,
        signature_header=header,
        cron=cron,
        timezone=timezone,
        input=raw.get("input"),
    )


def _signature(p: Problems, raw: Any, path: str) -> str | None:
    """`signature: {header: X-Signature}` (or `signature: true`): sealflow generates the
    HMAC-SHA256 secret when the workflow is saved and shows it once."""
    if raw is None or raw is False:
        return None
    if raw is True:
        return DEFAULT_SIGNATURE_HEADER
    if not isinstance(raw, dict):
        p.add(path, f"must be true or an object with a header name, found {kind(raw)}")
        return None
    p.unknown(raw, path, ("header",))
    header = raw.get("header", DEFAULT_SIGNATURE_HEADER)
    if not isinstance(header, str) or not HEADER_RE.fullmatch(header):
        p.add(child_path(path, "header"), "must be an HTTP header name")
        return None
    return header


def _cron(p: Problems, raw: Mapping[str, Any], path: str) -> None:
    cron = raw.get("cron")
    if "cron" not in raw:
        p.add(path, "is required on schedule triggers")
    elif not isinstance(cron, str):
        p.add(path, f"must be a cron expression, found {kind(cron)}")
    elif not (cron.strip().startswith("@") or len(cron.split()) == 5) or not croniter.is_valid(
        cron
    ):
        p.add(path, f"invalid cron expression {cron!r}: five fields (minute hour day month "
                    "weekday) or @hourly, @daily, @weekly, @monthly, @yearly")  # fmt: skip


def _timezone(p: Problems, timezone: Any, path: str) -> None:
    if not isinstance(timezone, str):
        p.add(path, f"must be an IANA time zone name, found {kind(timezone)}")
        return
    try:
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        p.add(path, f"unknown time zone {timezone!r} (an IANA name such as Europe/Paris)")
