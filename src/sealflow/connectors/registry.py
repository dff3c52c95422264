"""Which connectors exist: the built-ins and third-party plugins, found through the
`sealflow.connectors` entry point group (SPEC W4), and the catalogue the workflow validator
asks about (`lookup`).

Nothing is discovered at import time: `ConnectorRegistry.discover()` is called by
bootstrap. A connector is checked when registered (name, operations, valid JSON Schemas) so
a broken plugin fails at start-up with its name, not in the middle of an execution.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.metadata import entry_points

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from sealflow.connectors.base import Connector
from sealflow.core.errors import NotFound
from sealflow.core.workflows import OperationInfo

ENTRY_POINT_GROUP = "sealflow.connectors"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnknownConnector(NotFound):
    code = "unknown_connector"


class ConnectorLoadError(Exception):
    """A connector (usually a plugin) is malformed or failed to load."""


class ConnectorRegistry:
    def __init__(self, connectors: Iterable[Connector] = ()) -> None:
        self._connectors: dict[str, Connector] = {}
        self.load_errors: list[str] = []
        for connector in connectors:
            self.register(connector)

    @classmethod
    def discover(cls, *, strict: bool = True, group: str = ENTRY_POINT_GROUP) -> ConnectorRegistry:
        """Load every connector of the entry point group. strict: a plugin that fails to
        load raises ConnectorLoadError; otherwise it is skipped and named in load_errors."""
        registry = cls()
        seen: dict[str, str] = {}
        for ep in sorted(entry_points(group=group), key=lambda e: (e.name, e.value)):
            if seen.get(ep.name) == ep.value:
                continue  # the same distribution seen twice on sys.path
            seen[ep.name] = ep.value
            try:
                connector = ep.load()()
                if not isinstance(connector, Connector):
                    raise ConnectorLoadError(f"returned {type(connector).__name__}, not Connector")
                if connector.name != ep.name:
                    raise ConnectorLoadError(
                        f"entry point is named {ep.name!r} but the connector {connector.name!r}"
                    )
                registry.register(connector)
            except Exception as exc:
                message = f"connector plugin {ep.name!r} ({ep.value}) failed to load: {exc}"
                if strict:
                    raise ConnectorLoadError(message) from exc
                registry.load_errors.append(message)
        return registry

    def register(self, connector: Connector, *, replace: bool = False) -> None:
        _check(connector)
        if connector.name in self._connectors and not replace:
            raise ConnectorLoadError(f"a connector named {connector.name!r} is already registered")
        self._connectors[connector.name] = connector

    def get(self, name: str) -> Connector:
        try:
            return self._connectors[name]
        except KeyError:
            known = ", ".join(self.names()) or "none"
            raise UnknownConnector(f"unknown connector {name!r} (registered: {known})") from None

    def names(self) -> list[str]:
        return sorted(self._connectors)

    def connectors(self) -> list[str]:
        """ListingCatalog: lets the validator name the known connectors in its errors."""
        return self.names()

    def operations(self, connector: str) -> list[str]:
        found = self._connectors.get(connector)
        return sorted(found.operations) if found else []

    def lookup(self, connector: str, operation: str | None) -> OperationInfo | None:
        """The validator's view of one operation; None when the connector or operation does
        not exist (operation None: the connector's only operation, if it has one)."""
        found = self._connectors.get(connector)
        op = found.operation(operation) if found else None
        if found is None or op is None:
            return None
        return OperationInfo(
            connector=found.name,
            operation=op.name,
            input_schema=op.input_schema,
            control=found.control,
            accepts_auth=bool(found.auth_types),
            timeout_limit=found.extra.get("timeout_limit"),
        )

    def __contains__(self, name: object) -> bool:
        return name in self._connectors


def _check(connector: Connector) -> None:
    if not NAME_PATTERN.match(connector.name):
        raise ConnectorLoadError(
            f"connector name {connector.name!r} must match {NAME_PATTERN.pattern}"
        )
    if not connector.operations:
        raise ConnectorLoadError(f"connector {connector.name!r} has no operations")
    for key, op in connector.operations.items():
        where = f"connector {connector.name!r} operation {key!r}"
        if key != op.name:
            raise ConnectorLoadError(f"{where} is registered under another name ({op.name!r})")
        for label, schema in (("input", op.input_schema), ("output", op.output_schema)):
            try:
                Draft202012Validator.check_schema(dict(schema))
            except SchemaError as exc:
                raise ConnectorLoadError(f"{where}: invalid {label} schema: {exc.message}") from exc
