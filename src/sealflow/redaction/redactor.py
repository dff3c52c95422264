"""The one redaction entry point (house rule 4): whatever is stored, logged or returned passes
a Redactor first. One per execution, holding the secrets it touches; STATIC, with the rules
and detectors only, where no execution is in scope (server logs, API errors)."""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from sealflow.core.secrets import Secret
from sealflow.redaction import cards, detectors, spans
from sealflow.redaction.forms import basic_pair_value
from sealflow.redaction.masker import KnownValues
from sealflow.redaction.policy import RedactionPolicy
from sealflow.redaction.rules import matches

__all__ = ["FIELD_REPLACEMENT", "STATIC", "RedactionPolicy", "Redactor"]

FIELD_REPLACEMENT = "[REDACTED]"
_ENCODE_FROM = 1024  # characters
_PAIR_NAME_KEYS = ("name", "key")  # HAR / Postman style {"name": "Cookie", "value": "..."}


class Redactor:
    """Masks known secret values (in every wire form), values under sensitive field names,
    well-known token formats and card numbers. Returns new values; never mutates its input."""

    _MEMO_LIMIT = 4096

    def __init__(self, policy: RedactionPolicy | None = None) -> None:
        self.policy = policy if policy is not None else RedactionPolicy.default()
        self._known = KnownValues()
        self._cards = "card" in self.policy.detectors
        # Mapping keys repeat (every record of a list has the same ones): remember what each
        # became and whether its value is masked. Emptied when a secret is added.
        self._keys: dict[str, tuple[str, bool]] | None = {}

    def add_secret(self, name: str, value: str) -> None:
        """Mask `value` and its wire forms as `[REDACTED:<name>]` from now on (`name` is the
        authentication's). Values under 8 characters are ignored: they were refused when the
        authentication was saved. Cheap: the automaton is rebuilt on the next search."""
        self._known.add(name, value)
        if self._keys:
            self._keys.clear()

    def add_basic_pair(self, name: str, username: str, password: str) -> None:
        """Mask `username:password` in every form, its base64 (a `Basic` header) included."""
        self.add_secret(name, basic_pair_value(username, password))

    @property
    def secret_count(self) -> int:
        return self._known.count

    def text(self, s: str) -> str:
        """`s` with known values, token formats and card numbers masked; the rest unchanged.
        Where matches overlap, the longest names the merged span."""
        if len(s) < 8:  # shorter than any secret form or token
            return s
        # Large texts are read as UTF-8 bytes by the filters: encode once for all of them.
        data = s.encode("utf-8", "surrogatepass") if len(s) >= _ENCODE_FROM else None
        found = self._known.find(s, data)
        found += detectors.find(s, self.policy.detectors, data)
        return spans.apply(s, found) if found else s

    def value(self, v: Any) -> Any:
        """A copy of a JSON-like value with every string masked by text(), and the value of
        each key matching a field-name rule replaced by "[REDACTED]" whatever its type; also
        header pairs (["Set-Cookie", "..."]) and {"name": "Cookie", "value": "..."} items.
        Integers that are card numbers become "[REDACTED:card]". Other objects are returned
        as they are, except Secret, which becomes its printed form."""
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, Mapping):
            return self._mapping(v)
        if isinstance(v, list | tuple):
            return self._sequence(v)
        if isinstance(v, int) and not isinstance(v, bool) and self._cards:
            return cards.LABEL if cards.is_card_number(str(abs(v))) else v
        if isinstance(v, Secret):
            return repr(v)
        return v

    def _sensitive(self, key: Any) -> bool:
        return isinstance(key, str) and matches(key, self.policy.field_names)

    def _key(self, key: str) -> tuple[str, bool]:
        """(the key masked, whether its value is masked by the field-name rules)"""
        memo = self._keys
        found = memo.get(key) if memo is not None else None
        if found is None:
            found = (self.text(key), matches(key, self.policy.field_names))
            if memo is not None:
                if len(memo) >= self._MEMO_LIMIT:
                    memo.clear()
                memo[key] = found
        return found

    def _mapping(self, m: Mapping[Any, Any]) -> dict[Any, Any]:
        pair_name = next((m[k] for k in _PAIR_NAME_KEYS if k in m), None)
        masked_pair = "value" in m and self._sensitive(pair_name)
        out = {}
        for key, item in m.items():
            if isinstance(key, str):
                shown, sensitive = self._key(key)
                sensitive = sensitive or (masked_pair and key == "value")
            else:
                shown, sensitive = key, False
            out[shown] = FIELD_REPLACEMENT if sensitive else self.value(item)
        return out

    def _sequence(self, seq: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
        if len(seq) == 2 and self._sensitive(seq[0]) and not isinstance(seq[1], Mapping | list):
            items = [self.text(seq[0]), FIELD_REPLACEMENT]  # a recorded header ["Cookie", ".."]
        else:
            items = [self.value(item) for item in seq]
        return tuple(items) if isinstance(seq, tuple) else items

    def exception_text(self, exc: BaseException) -> str:
        """The exception's message and traceback (causes and contexts included), masked."""
        return self.text("".join(traceback.format_exception(exc)))


class _StaticRedactor(Redactor):
    """Rules and detectors only; refuses secrets and keeps no memo, so the shared instance
    never changes."""

    def __init__(self) -> None:
        super().__init__()
        self._keys = None

    def add_secret(self, name: str, value: str) -> None:
        raise TypeError("STATIC holds no secrets: make a Redactor for the execution")

    def add_basic_pair(self, name: str, username: str, password: str) -> None:
        raise TypeError("STATIC holds no secrets: make a Redactor for the execution")


STATIC: Redactor = _StaticRedactor()
