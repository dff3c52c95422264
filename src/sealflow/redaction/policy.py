"""An account's redaction rules, read from its settings: field names it adds to the defaults
and detectors it turns off. An account can add, never remove: the default field names (the
HTTP credential headers among them) always apply."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sealflow.core.errors import InvalidInput, Issue
from sealflow.redaction.detectors import DETECTORS
from sealflow.redaction.rules import (
    ALWAYS_MASKED_HEADERS,
    DEFAULT_FIELD_NAMES,
    MAX_FIELD_NAME_CHARS,
    normalise,
)

MAX_EXTRA_FIELD_NAMES = 200
_ROOT = "$.redaction"
_SETTINGS = ("extra_field_names", "disabled_detectors")


@dataclass(frozen=True)
class RedactionPolicy:
    field_names: frozenset[str] = DEFAULT_FIELD_NAMES
    detectors: frozenset[str] = field(default_factory=lambda: frozenset(DETECTORS))

    def __post_init__(self) -> None:
        # Stored normalised (rules.normalise), and never without the credential headers.
        names = frozenset(normalise(n) for n in self.field_names) | ALWAYS_MASKED_HEADERS
        object.__setattr__(self, "field_names", names - {""})
        unknown = self.detectors - set(DETECTORS)
        if unknown:
            raise ValueError(f"unknown detectors: {sorted(unknown)}")

    @classmethod
    def default(cls) -> RedactionPolicy:
        return cls()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any] | None) -> RedactionPolicy:
        """From an account's `redaction` settings: {"extra_field_names": [...],
        "disabled_detectors": [...]}; both optional. Raises InvalidInput naming each fault
        by its path, e.g. `$.redaction.extra_field_names[0]`."""
        if settings is None:
            return cls()
        if not isinstance(settings, Mapping):
            raise InvalidInput("invalid redaction settings", [Issue(_ROOT, "must be an object")])
        issues = [
            Issue(f"{_ROOT}.{key}", f"unknown setting; expected one of {', '.join(_SETTINGS)}")
            for key in settings
            if key not in _SETTINGS
        ]
        extra = _strings(settings, "extra_field_names", issues, _field_name_problem)
        disabled = _strings(settings, "disabled_detectors", issues, _detector_problem)
        if len(extra) > MAX_EXTRA_FIELD_NAMES:
            issues.append(
                Issue(f"{_ROOT}.extra_field_names", f"at most {MAX_EXTRA_FIELD_NAMES} names")
            )
        if issues:
            raise InvalidInput("invalid redaction settings", issues)
        return cls(
            field_names=DEFAULT_FIELD_NAMES | frozenset(extra),
            detectors=frozenset(DETECTORS) - frozenset(disabled),
        )


def _field_name_problem(name: str) -> str | None:
    if 0 < len(name) <= MAX_FIELD_NAME_CHARS and normalise(name):
        return None
    return f"a field name of 1 to {MAX_FIELD_NAME_CHARS} characters, with a letter or digit"


def _detector_problem(name: str) -> str | None:
    if name in DETECTORS:
        return None
    return f"unknown detector; expected one of {', '.join(DETECTORS)}"


def _strings(
    settings: Mapping[str, Any],
    key: str,
    issues: list[Issue],
    problem: Callable[[str], str | None],
) -> list[str]:
    """The valid strings of the list at `key` ([] when absent); an issue for each fault, in
    the order of the input."""
    value = settings.get(key)
    if value is None:
        return []
    path = f"{_ROOT}.{key}"
    if not isinstance(value, list | tuple):
        issues.append(Issue(path, "must be a list of strings"))
        return []
    out = []
    for i, item in enumerate(value):
        message = problem(item) if isinstance(item, str) else "must be a string"
        if message is None:
            out.append(item)
        else:
            issues.append(Issue(f"{path}[{i}]", message))
    return out
