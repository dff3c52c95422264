"""Secrets are a type, not a `str` (DESIGN house rule 5): they print as [REDACTED] and only
`reveal()` gives the value, which only the step interceptor calls for a connector."""

from __future__ import annotations


class Secret:
    __slots__ = ("_value", "name")

    def __init__(self, value: str, name: str = "secret") -> None:
        self._value = value
        self.name = name

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"[REDACTED:{self.name}]"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self) -> str | tuple[object, ...]:  # never pickled by accident
        raise TypeError("Secret values cannot be pickled")


def reveal_all(value: object) -> object:
    """The value with every Secret inside replaced by its text: what a connector receives,
    at the very end of the step chain (the recorded input keeps `$.auth` references)."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: reveal_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal_all(v) for v in value]
    return value
