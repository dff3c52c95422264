"""The registry: built-ins found through the real entry points of the installed package,
plugins registered and checked, and the catalogue the workflow validator reads."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from typing import Any

import pytest

from sealflow.connectors import registry as registry_module
from sealflow.connectors.base import Connector, Operation
from sealflow.connectors.registry import (
    ConnectorLoadError,
    ConnectorRegistry,
    UnknownConnector,
)
from sealflow.core.workflows import OperationInfo

BUILT_INS = ["branch", "call_workflow", "delay", "http", "loop", "raise_error", "respond",
             "storage", "switch", "transform"]


async def _noop(input: dict[str, Any], ctx: Any) -> Any:
    return {}


def _plugin(name: str = "crm", schema: dict[str, Any] | None = None) -> Connector:
    op = Operation(
        name="create_contact",
        description="",
        input_schema=schema or {"type": "object"},
        output_schema={"type": "object"},
        handler=_noop,
    )
    other = Operation(name="delete_contact", description="", input_schema={},
                      output_schema={}, handler=_noop)
    return Connector(name=name, description="a plugin",
                     operations={op.name: op, other.name: other}, auth_types=("api_key",))


def test_discover_finds_the_ten_built_ins_through_entry_points() -> None:
    registry = ConnectorRegistry.discover()
    assert registry.names() == BUILT_INS
    assert registry.connectors() == BUILT_INS
    assert registry.load_errors == []
    assert registry.get("http").operations.keys() == {"request"}


def test_lookup_is_the_validator_catalogue() -> None:
    registry = ConnectorRegistry.discover()
    http = registry.lookup("http", None)
    assert isinstance(http, OperationInfo)
    assert (http.connector, http.operation, http.control, http.accepts_auth) == (
        "http", "request", None, True)
    assert http.input_schema["required"] == ["method", "url"]
    assert registry.lookup("http", "request") == http
    assert registry.lookup("branch", None).control == "branch"  # type: ignore[union-attr]
    assert registry.lookup("switch", None).control == "switch"  # type: ignore[union-attr]
    assert registry.lookup("loop", None).control == "loop"  # type: ignore[union-attr]
    assert registry.lookup("transform", None).accepts_auth is False  # type: ignore[union-attr]
    assert registry.lookup("http", "nope") is None
    assert registry.lookup("nope", None) is None
    assert registry.operations("http") == ["request"]
    assert registry.operations("nope") == []


def test_plugins_register_and_multi_operation_needs_a_name() -> None:
    registry = ConnectorRegistry([_plugin()])
    assert "crm" in registry and registry.names() == ["crm"]
    assert registry.lookup("crm", None) is None  # two operations: the step must name one
    info = registry.lookup("crm", "create_contact")
    assert info is not None and info.accepts_auth
    assert registry.operations("crm") == ["create_contact", "delete_contact"]
    with pytest.raises(ConnectorLoadError, match="already registered"):
        registry.register(_plugin())
    registry.register(_plugin(), replace=True)


def test_unknown_connector_error_lists_the_known_ones() -> None:
    registry = ConnectorRegistry([_plugin()])
    with pytest.raises(UnknownConnector, match=r"unknown connector 'smtp'.*crm") as caught:
        registry.get("smtp")
    assert caught.value.code == "unknown_connector"


@pytest.mark.parametrize(
    ("connector", "message"),
    [
        (_plugin(name="Bad Name"), "must match"),
        (_plugin(schema={"type": "objekt"}), "invalid input schema"),
        (Connector(name="empty", description="", operations={}), "no operations"),
    ],
)
def test_malformed_connectors_are_refused(connector: Connector, message: str) -> None:
    with pytest.raises(ConnectorLoadError, match=message):
        ConnectorRegistry().register(connector)


def test_broken_plugins_fail_loudly_or_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    group = registry_module.ENTRY_POINT_GROUP
    fake = [
        EntryPoint("http", "sealflow.connectors.http:connector", group),
        EntryPoint("http", "sealflow.connectors.http:connector", group),  # seen twice
        EntryPoint("renamed", "sealflow.connectors.control:branch", group),
        EntryPoint("missing", "sealflow_no_such_plugin:connector", group),
    ]
    monkeypatch.setattr(registry_module, "entry_points", lambda group: fake)
    with pytest.raises(ConnectorLoadError, match="'missing'"):
        ConnectorRegistry.discover()
    registry = ConnectorRegistry.discover(strict=False)
    assert registry.names() == ["http"]
    assert len(registry.load_errors) == 2
    assert any("named 'renamed' but the connector 'branch'" in e for e in registry.load_errors)
