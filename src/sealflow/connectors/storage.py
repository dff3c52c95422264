"""The data storage connector (D1): keys and values kept between steps and executions, in
three scopes: `execution` (removed when the execution ends), `workflow` (removed with the
workflow) and `account` (removed with the account).

Operations: set, get, delete, append_to_list, delete_from_list, atomic_increment,
get_all_keys, add_to_collection, shift_collection, await_value. A collection is a list used
as a queue: add_to_collection puts an element at the end, shift_collection takes the first.

The work is done by services.storage through `ctx.storage`, a capability the engine binds to
this execution's account, workflow and execution; values are sealed (S6) and every change is
atomic in the database (see that module). Limits: storage_value_bytes (one value or element
as JSON) and storage_key_length.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from sealflow.connectors.base import Connector, Operation, StepContext
from sealflow.core.errors import ConnectorError
from sealflow.services.storage import MAX_PAGE, SCOPES, Found

SCHEMA = "https://json-schema.org/draft/2020-12/schema"
MAX_AWAIT_S = 3600
_SCOPE = {"type": "string", "enum": list(SCOPES)}
_KEY = {"type": "string", "minLength": 1}  # its length limit is storage_key_length
_VALUE = {"description": "any JSON value"}


class Storage(Protocol):
    """What the connector needs of ctx.storage (services.storage.ScopedStorage)."""

    def set(self, scope: str, key: str, value: Any) -> None: ...
    def get(self, scope: str, key: str) -> Found: ...
    def delete(self, scope: str, key: str) -> bool: ...
    def append(self, scope: str, key: str, value: Any) -> int: ...
    def delete_from_list(
        self, scope: str, key: str, *, index: int | None = None, value: Any = None,
        by_value: bool = False,
    ) -> tuple[int, int]: ...
    def increment(self, scope: str, key: str, by: int | float = 1) -> int | float: ...
    def keys(self, scope: str, *, cursor: str | None = None, limit: int = 100) -> tuple[
        list[str], str | None]: ...
    def shift(self, scope: str, key: str) -> Found: ...
    async def await_value(self, scope: str, key: str, timeout_s: float) -> Any: ...


def _storage(ctx: StepContext) -> Storage:
    storage: Storage | None = getattr(ctx, "storage", None)
    if storage is None:
        raise ConnectorError("data storage is not available to this step",
                             code="storage_unavailable")
    return storage


def _object(
    properties: Mapping[str, Any], required: tuple[str, ...] = (), **more: Any
) -> dict[str, Any]:
    return {
        "$schema": SCHEMA,
        "type": "object",
        "properties": dict(properties),
        "required": list(required),
        "additionalProperties": False,
        **more,
    }


def _keyed(**more: Any) -> dict[str, Any]:
    return _object({"scope": _SCOPE, "key": _KEY, **more}, ("scope", "key"))


_FOUND = _object({"found": {"type": "boolean"}, "value": _VALUE}, ("found", "value"))
_LENGTH = _object({"length": {"type": "integer", "minimum": 0}}, ("length",))


# ---- handlers -----------------------------------------------------------------------------
async def _set(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    _storage(ctx).set(input["scope"], input["key"], input.get("value"))
    return {"key": input["key"]}


async def _get(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    got = _storage(ctx).get(input["scope"], input["key"])
    return {"found": got.found, "value": got.value if got.found else input.get("default")}


async def _delete(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"deleted": _storage(ctx).delete(input["scope"], input["key"])}


async def _append(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"length": _storage(ctx).append(input["scope"], input["key"], input.get("value"))}


async def _delete_from_list(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    storage = _storage(ctx)
    if "index" in input:
        removed, left = storage.delete_from_list(input["scope"], input["key"],
                                                 index=input["index"])
    else:
        removed, left = storage.delete_from_list(input["scope"], input["key"],
                                                 value=input.get("value"), by_value=True)
    return {"removed": removed, "length": left}


async def _increment(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    return {"value": _storage(ctx).increment(input["scope"], input["key"], input.get("by", 1))}


async def _get_all_keys(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    keys, cursor = _storage(ctx).keys(
        input["scope"], cursor=input.get("cursor"), limit=input.get("limit", 100)
    )
    return {"keys": keys, "cursor": cursor}


async def _shift(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    got = _storage(ctx).shift(input["scope"], input["key"])
    return {"found": got.found, "value": got.value}


async def _await(input: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
    # Bounded by the step's own timeout: past it the engine would cancel the step anyway.
    wanted = float(input.get("timeout_s", 30))
    timeout = max(0.0, min(wanted, ctx.timeout_s - 0.5))
    value = await _storage(ctx).await_value(input["scope"], input["key"], timeout)
    return {"value": value}


def storage() -> Connector:
    ops = [
        Operation("set", "Store a value at a key (replacing what it held).",
                  _keyed(value=_VALUE),
                  _object({"key": {"type": "string"}}, ("key",)), _set),
        Operation("get", "Read the value at a key (a list is returned whole).",
                  _keyed(default={"description": "the value when the key is missing"}),
                  _FOUND, _get),
        Operation("delete", "Remove a key and its value.", _keyed(),
                  _object({"deleted": {"type": "boolean"}}, ("deleted",)), _delete),
        Operation("append_to_list", "Add a value at the end of the list at a key.",
                  _keyed(value=_VALUE), _LENGTH, _append),
        Operation(
            "delete_from_list",
            "Remove the element at `index` (negative counts from the end), or every element "
            "equal to `value`.",
            {**_keyed(index={"type": "integer"}, value=_VALUE),
             "oneOf": [{"required": ["index"]}, {"required": ["value"]}]},
            _object({"removed": {"type": "integer", "minimum": 0},
                     "length": {"type": "integer", "minimum": 0}}, ("removed", "length")),
            _delete_from_list,
        ),
        Operation("atomic_increment",
                  "Add `by` (default 1) to the number at a key (0 when missing), atomically "
                  "across concurrent executions; returns the new number.",
                  _keyed(by={"type": "number", "default": 1}),
                  _object({"value": {"type": "number"}}, ("value",)), _increment),
        Operation("get_all_keys", "One page of a scope's keys; pass `cursor` for the next.",
                  _object({"scope": _SCOPE,
                           "cursor": {"type": ["string", "null"]},
                           "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE,
                                     "default": 100}}, ("scope",)),
                  _object({"keys": {"type": "array", "items": {"type": "string"}},
                           "cursor": {"type": ["string", "null"]}}, ("keys", "cursor")),
                  _get_all_keys),
        Operation("add_to_collection", "Add an element at the end of a collection (a queue).",
                  _keyed(value=_VALUE), _LENGTH, _append),
        Operation("shift_collection", "Remove and return the first element of a collection.",
                  _keyed(), _FOUND, _shift),
        Operation("await_value",
                  "Wait until the key has a value (set by another execution, say), up to "
                  "`timeout_s` and never past the step's timeout; fails with await_timeout.",
                  _keyed(timeout_s={"type": "number", "minimum": 0, "maximum": MAX_AWAIT_S,
                                    "default": 30}),
                  _object({"value": _VALUE}, ("value",)), _await),
    ]
    return Connector(
        name="storage",
        description="Keep data between steps and executions (execution, workflow or account "
                    "scope); values encrypted, atomic under concurrent executions.",
        operations={op.name: op for op in ops},
    )
