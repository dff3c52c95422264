"""References and templates in step inputs (SPEC W2; docs/workflows.md "References").

A string that is exactly a reference (`$.steps.fetch.body.id`) is replaced by the value it
points at, of any JSON type. `{{ reference }}` inside a longer string is replaced by the
value's text form (strings as they are, anything else as compact JSON). `\\{{` is a literal
`{{`, and a string starting with `\\$.` is literal text starting with `$.`.

Parsing is cached (`lru_cache`): resolve() runs for every step of every execution.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

from sealflow.core.errors import SealflowError
from sealflow.core.secrets import Secret

Root = Literal["trigger", "steps", "auth", "item", "index"]
ROOTS: tuple[Root, ...] = ("trigger", "steps", "auth", "item", "index")


@dataclass(frozen=True)
class Reference:
    """A parsed reference: `$.<root>` followed by names and indexes. `text` is as written."""

    root: Root
    path: tuple[str | int, ...]
    text: str


class ReferenceError_(SealflowError):
    """A reference could not be resolved at run time (a missing key, index or step output).
    Not retryable: the same data gives the same answer."""

    code = "reference_error"
    retryable = False

    def __init__(self, message: str, *, reference: str, segment: str | int | None = None):
        super().__init__(message)
        self.reference = reference
        self.segment = segment


_ROOT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_INDEX = re.compile(r"\[(-?[0-9]+)\]")
_QUOTED = re.compile(r"""\[(?:"((?:[^"\\]|\\.)*)"|'([^'\\]*)')\]""")
# A string made only of the characters references use is meant as one: when it does not
# parse, validation reports it instead of silently keeping it as text.
_LOOKS_LIKE_REFERENCE = re.compile(r"""\$\.[A-Za-z0-9_.\-\[\]"']*""")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _invalid(text: str, why: str) -> ValueError:
    return ValueError(f"invalid reference {text!r}: {why}")


MAX_REFERENCE_CHARS = 1024
_CACHED_TEXT_CHARS = 4096  # longer strings are parsed each time, never kept in the cache


def parse_reference(text: str) -> Reference:
    """Parse `$.root.name[0]["any key"]…`; raise ValueError saying what is wrong and where."""
    if len(text) > MAX_REFERENCE_CHARS:
        raise _invalid(text[:40] + "…", f"longer than {MAX_REFERENCE_CHARS} characters")
    return _parse_reference(text)


@lru_cache(maxsize=4096)
def _parse_reference(text: str) -> Reference:
    if not text.startswith("$."):
        raise _invalid(text, "a reference starts with '$.'")
    m = _ROOT.match(text, 2)
    if m is None:
        raise _invalid(text, f"expected one of {', '.join(ROOTS)} after '$.'")
    root = m.group()
    if root not in ROOTS:
        hint = difflib.get_close_matches(root, ROOTS, n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise _invalid(text, f"unknown root '{root}'{extra}; expected one of {', '.join(ROOTS)}")
    path: list[str | int] = []
    pos = m.end()
    while pos < len(text):
        char = text[pos]
        if char == ".":
            nm = _NAME.match(text, pos + 1)
            if nm is None:
                raise _invalid(text, f"expected a name after '.' at position {pos}")
            path.append(nm.group())
            pos = nm.end()
        elif char == "[":
            im = _INDEX.match(text, pos)
            if im is not None:
                path.append(int(im.group(1)))
                pos = im.end()
                continue
            qm = _QUOTED.match(text, pos)
            if qm is None:
                raise _invalid(text, f'expected [<index>] or ["<key>"] at position {pos}')
            key = qm.group(2) if qm.group(1) is None else json.loads(f'"{qm.group(1)}"')
            path.append(key)
            pos = qm.end()
        else:
            raise _invalid(text, f"unexpected {char!r} at position {pos}")
    _check_shape(text, root, path)
    return Reference(root=root, path=tuple(path), text=text)


def _check_shape(text: str, root: Root, path: list[str | int]) -> None:
    if root == "steps" and (not path or not isinstance(path[0], str)):
        raise _invalid(text, "name the step: $.steps.<step name>…")
    if root == "auth" and (len(path) != 1 or not isinstance(path[0], str)):
        raise _invalid(text, "name one field of the authentication: $.auth.<field>")
    if root == "index" and path:
        raise _invalid(text, "$.index is a number and has no fields")


@dataclass(frozen=True)
class _Template:
    parts: tuple[str | Reference, ...]  # literal text and references, in order


def _parse_template(text: str) -> _Template:
    parts: list[str | Reference] = []
    buf: list[str] = []
    pos = 0
    while True:
        j = text.find("{{", pos)
        if j < 0:
            buf.append(text[pos:])
            break
        if j > pos and text[j - 1] == "\\":
            buf.append(text[pos : j - 1] + "{{")
            pos = j + 2
            continue
        buf.append(text[pos:j])
        k = text.find("}}", j + 2)
        if k < 0:
            raise ValueError(f"unclosed '{{{{' at position {j} (write '\\{{{{' for a literal)")
        inner = text[j + 2 : k].strip()
        try:
            ref = parse_reference(inner)
        except ValueError as exc:
            raise ValueError(f"in '{{{{ }}}}' at position {j}: {exc}") from None
        if buf:
            parts.append("".join(buf))
            buf = []
        parts.append(ref)
        pos = k + 2
    if buf and "".join(buf):
        parts.append("".join(buf))
    return _Template(tuple(parts))


def _compile(text: str) -> Reference | _Template | None:
    """A whole-string reference, a template, or None for plain text (returned unchanged)."""
    return _compile_cached(text) if len(text) <= _CACHED_TEXT_CHARS else _compile_text(text)


@lru_cache(maxsize=8192)
def _compile_cached(text: str) -> Reference | _Template | None:
    return _compile_text(text)


def _compile_text(text: str) -> Reference | _Template | None:
    if text.startswith("$."):
        try:
            return parse_reference(text)
        except ValueError:
            if _LOOKS_LIKE_REFERENCE.fullmatch(text):
                raise
    if text.startswith("\\$."):
        return _parse_template(text[1:])
    return _parse_template(text) if "{{" in text else None


def _might_be_dynamic(text: str) -> bool:
    return text.startswith(("$.", "\\$.")) or "{{" in text


def is_dynamic(value: Any) -> bool:
    """True for a string whose value is only known at run time (a reference or a template
    with at least one reference). Invalid syntax counts as not dynamic."""
    if not isinstance(value, str) or isinstance(value, ResolvedText):
        return False
    if not _might_be_dynamic(value):
        return False
    try:
        compiled = _compile(value)
    except ValueError:
        return False
    if isinstance(compiled, _Template):
        return any(isinstance(p, Reference) for p in compiled.parts)
    return compiled is not None


def child_path(path: str, key: Any) -> str:
    """`$.a` + `b` -> `$.a.b`; + 2 -> `$.a[2]`; + `X-Id` -> `$.a["X-Id"]`."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    key = str(key)
    if _IDENTIFIER.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def scan_references(
    value: Any, path: str = "$"
) -> tuple[list[tuple[str, Reference]], list[tuple[str, str]]]:
    """Every reference in `value` with its JSON path, and every syntax error (path, message)."""
    refs: list[tuple[str, Reference]] = []
    errors: list[tuple[str, str]] = []
    stack: list[tuple[str, Any]] = [(path, value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, Mapping):
            stack.extend((child_path(where, k), v) for k, v in reversed(list(item.items())))
        elif isinstance(item, list):
            stack.extend((child_path(where, i), v) for i, v in reversed(list(enumerate(item))))
        elif (
            isinstance(item, str) and not isinstance(item, ResolvedText) and _might_be_dynamic(item)
        ):
            try:
                compiled = _compile(item)
            except ValueError as exc:
                errors.append((where, str(exc)))
                continue
            if isinstance(compiled, Reference):
                refs.append((where, compiled))
            elif compiled is not None:
                refs.extend((where, p) for p in compiled.parts if isinstance(p, Reference))
    return refs, errors


def find_references(value: Any, path: str = "$") -> list[tuple[str, Reference]]:
    """(JSON path, reference) for whole-string references and each `{{ }}` in templates.
    Raises ValueError, naming the path, at the first syntax error."""
    refs, errors = scan_references(value, path)
    if errors:
        where, message = errors[0]
        raise ValueError(f"{where}: {message}")
    return refs


class ResolvedText(str):
    """A string resolve() produced from data (a referenced value, a rendered template).
    It is data, never read as a reference or template again: a later resolve() call (the
    interceptor's `$.auth` pass) keeps it as it is, so a payload holding `$.auth.token`
    cannot pull a secret into a request. It serialises as a plain JSON string."""

    __slots__ = ()


class _PendingText(str):
    """A template resolve() rendered but for its `$.auth` references (auth=None). It reads
    as the template text with its data escaped; the `$.auth` pass renders `parts` (the
    rendered text and the references) without parsing anything again."""

    parts: tuple[str | Reference, ...]


def _copy(value: Any) -> Any:
    """A copy sharing no container with the context, its strings marked as data."""
    if isinstance(value, str):
        return value if isinstance(value, ResolvedText) else ResolvedText(value)
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def resolve(
    value: Any, context: Mapping[str, Any], *, auth: Mapping[str, Secret | str] | None = None
) -> Any:
    """Replace references and templates in `value` (dicts and lists are walked; keys are
    not). `context` holds `trigger`, `steps` (name -> output), and in a loop body `item`
    and `index`. The result shares no mutable container with `context`.

    A missing key, index, step output or loop variable raises ReferenceError_ naming the
    reference and the segment. With `auth=None`, `$.auth.*` references stay as written
    (the recorded, secret-free input). With `auth`, they resolve: a whole-string reference
    gives the Secret itself, and a template that includes a Secret becomes a Secret.

    Two passes are safe: resolve(resolve(x, ctx), {}, auth=a) == resolve(x, ctx, auth=a).
    Strings the first pass produced from data are ResolvedText and never parsed again, and
    a template left pending on `$.auth` has the text it took from data escaped.
    """

    def lookup(ref: Reference) -> Any:
        if ref.root == "auth":
            field = cast(str, ref.path[0])
            if auth is None or field not in auth:
                raise ReferenceError_(
                    f"{ref.text}: the authentication has no field '{field}'",
                    reference=ref.text,
                    segment=field,
                )
            return auth[field]
        if ref.root not in context:
            where = "inside a loop body" if ref.root in ("item", "index") else "here"
            raise ReferenceError_(
                f"{ref.text}: ${ref.root} is not available {where}", reference=ref.text
            )
        current = context[ref.root]
        for i, seg in enumerate(ref.path):
            current = _step_into(ref, current, seg, step_name=ref.root == "steps" and i == 0)
        return current

    def text_of(v: Any, found: list[Secret]) -> str:
        if isinstance(v, str):
            return v
        if isinstance(v, Secret):
            found.append(v)
            return v.reveal()

        def default(o: Any) -> Any:
            if isinstance(o, Secret):
                found.append(o)
                return o.reveal()
            return str(o)

        return json.dumps(v, separators=(",", ":"), ensure_ascii=False, default=default)

    def render(tpl: _Template) -> str | Secret:
        if auth is None and any(isinstance(p, Reference) and p.root == "auth" for p in tpl.parts):
            return pending(tpl)
        found: list[Secret] = []
        text = "".join(
            part if isinstance(part, str) else text_of(lookup(part), found) for part in tpl.parts
        )
        return Secret(text, found[0].name) if found else ResolvedText(text)

    def pending(tpl: _Template) -> _PendingText | Secret:
        parts: list[str | Reference] = []
        shown: list[str] = []  # the text form: a template again, its data escaped
        found: list[Secret] = []
        for part in tpl.parts:
            if isinstance(part, Reference) and part.root == "auth":
                parts.append(part)
                shown.append("{{ " + part.text + " }}")
            else:
                piece = part if isinstance(part, str) else text_of(lookup(part), found)
                parts.append(piece)
                shown.append(piece.replace("{{", "\\{{"))
        text = "".join(shown)
        if found:  # a Secret in the context: never shown, and never resolved further
            return Secret(text, found[0].name)
        out = _PendingText("\\" + text if text.startswith("$.") else text)
        out.parts = tuple(parts)
        return out

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            if isinstance(v, ResolvedText) or not _might_be_dynamic(v):
                return v
            if isinstance(v, _PendingText):
                return v if auth is None else render(_Template(v.parts))
            try:
                compiled = _compile(v)
            except ValueError as exc:
                raise ReferenceError_(str(exc), reference=v) from None
            if compiled is None:
                return v
            if isinstance(compiled, Reference):
                if compiled.root == "auth" and auth is None:
                    return v
                return _copy(lookup(compiled))
            return render(compiled)
        if isinstance(v, dict):
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    return walk(value)


def _step_into(ref: Reference, current: Any, seg: str | int, *, step_name: bool) -> Any:
    if isinstance(seg, int):
        if isinstance(current, list) and -len(current) <= seg < len(current):
            return current[seg]
        why = (
            f"index {seg} is out of range (the list has {len(current)} items)"
            if isinstance(current, list)
            else f"[{seg}] needs a list, found {kind(current)}"
        )
        raise ReferenceError_(f"{ref.text}: {why}", reference=ref.text, segment=seg)
    if isinstance(current, Mapping) and seg in current:
        return current[seg]
    if step_name:
        why = f"step '{seg}' has no output (it has not run in this execution)"
    elif isinstance(current, Mapping):
        why = f"no key '{seg}'"
    else:
        why = f"'.{seg}' needs an object, found {kind(current)}"
    raise ReferenceError_(f"{ref.text}: {why}", reference=ref.text, segment=seg)


def kind(value: Any) -> str:
    """A value's JSON type for error messages: 'a string', 'a list', 'null', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else type(value).__name__
