"""Workflow documents (SPEC W2, docs/workflows.md): parse the text, validate the document,
build the frozen model the engine runs.

The model lives in definitions.py and the field-by-field reading in validation.py; this
module checks the graph (edges, cycles, references, input schemas) and is the one to import.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, cast

import yaml
from jsonschema import Draft202012Validator

from sealflow.core.definitions import (
    MAX_DOCUMENT_CHARS,
    Catalog,
    Graph,
    OperationInfo,
    Problems,
    Step,
    Trigger,
    WorkflowDefinition,
    WorkflowInvalid,
    check_document,
    is_number,
    kind,
    suggest,
)
from sealflow.core.errors import Issue
from sealflow.core.expressions import Reference, child_path, is_dynamic, scan_references
from sealflow.core.limits import Limits
from sealflow.core.validation import ABSENT, StepGraph, _List, _Node, read_trigger

__all__ = [
    "Catalog",
    "Graph",
    "OperationInfo",
    "Step",
    "Trigger",
    "WorkflowDefinition",
    "WorkflowInvalid",
    "parse_text",
    "validate",
]

TOP_FIELDS = ("name", "description", "trigger", "start", "steps")
# Schema keywords whose verdict depends on the values inside the instance: with a reference
# or template somewhere inside, only the run-time check (after resolution) can tell.
_VALUE_DEPENDENT = frozenset(
    {"anyOf", "oneOf", "not", "if", "then", "else", "const", "enum", "uniqueItems", "contains",
     "minContains", "maxContains", "dependentSchemas", "unevaluatedItems",
     "unevaluatedProperties"}
)  # fmt: skip
# Keywords that pick a subschema by the values: the errors found in it are only certain
# when no value is dynamic.
_CONDITIONAL = frozenset({"then", "else", "dependentSchemas"})


def parse_text(text: str, fmt: Literal["json", "yaml"] | None = None) -> Any:
    """Parse a JSON or YAML document (fmt None: JSON when it starts with `{` or `[`).

    Syntax errors raise WorkflowInvalid at path `$` with the line and column. YAML is read
    with yaml.safe_load (no Python objects); a document past the hard caps (characters,
    depth, values — YAML aliases included) is refused before anything walks it.
    """
    if len(text) > MAX_DOCUMENT_CHARS:
        raise WorkflowInvalid(
            [Issue("$", f"the document is too large (over {MAX_DOCUMENT_CHARS} characters)")]
        )
    if fmt is None:
        fmt = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    try:
        if fmt == "json":
            document = json.loads(text, parse_constant=_no_constant)
        else:
            document = yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise WorkflowInvalid([Issue("$", message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = exc.problem or exc.context or "syntax error"
        raise WorkflowInvalid([Issue("$", f"invalid YAML{where}: {problem}")]) from None
    except yaml.YAMLError as exc:
        raise WorkflowInvalid([Issue("$", f"invalid YAML: {exc}")]) from None
    except ValueError as exc:  # NaN / Infinity, refused by _no_constant
        raise WorkflowInvalid([Issue("$", f"invalid JSON: {exc}")]) from None
    except RecursionError:
        raise WorkflowInvalid([Issue("$", "the document nests too deeply")]) from None
    check_document(document)  # raises past the caps; other issues are validate()'s
    return document


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def validate(document: Any, catalog: Catalog, limits: Limits) -> WorkflowDefinition:
    """The workflow a document describes, or WorkflowInvalid listing every problem found."""
    p = Problems()
    p.issues.extend(check_document(document))
    if not isinstance(document, dict):
        p.add("$", f"a workflow must be an object, found {kind(document)}")
        raise WorkflowInvalid(p.issues)
    p.unknown(document, "$", TOP_FIELDS)
    p.require(document, "$", ("name", "trigger", "steps"))
    name = p.text(document, "name", "$", 200) if "name" in document else None
    description = document.get("description", "")
    if "description" in document and not isinstance(description, str):
        p.add("$.description", f"must be a string, found {kind(description)}")
    trigger = read_trigger(p, document["trigger"]) if "trigger" in document else None
    steps = StepGraph(p, catalog, limits)
    top = _List("$.steps")
    if "steps" in document:
        steps.read(document["steps"], top)
    checker = _GraphChecker(p, steps, limits)
    checker.link(top, document.get("start", ABSENT))
    checker.check_inputs(top)
    if steps.count > limits.max_steps_per_workflow:
        p.add(
            "$.steps",
            f"the workflow has {steps.count} steps, over the limit "
            f"max_steps_per_workflow={limits.max_steps_per_workflow}",
        )
    if p.issues or trigger is None or name is None:
        raise WorkflowInvalid(p.issues)
    normalised = {k: _copy(v) for k, v in document.items()}
    normalised["steps"] = normalised_steps(top)
    return WorkflowDefinition(
        name=name,
        description=cast(str, description),
        trigger=trigger,
        graph=build_graph(top),
        document=normalised,
    )


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class _GraphChecker:
    """Edges, cycles, references and input schemas, once every step name is known."""

    def __init__(self, problems: Problems, steps: StepGraph, limits: Limits) -> None:
        self.p = problems
        self.names = steps.names
        self.limits = limits
        self._validators: dict[tuple[str, str], Draft202012Validator] = {}

    def link(self, lst: _List, start: Any = ABSENT) -> None:
        """Resolve every edge of `lst` (and of the loop bodies inside it) and find cycles."""
        for i, node in enumerate(lst.nodes):
            following = lst.nodes[i + 1].name if i + 1 < len(lst.nodes) else None
            if "next" in node.explicit or _takes_next(node):
                node.next = self._edge(node, "next", node.explicit.get("next", following))
            else:  # a branch or switch whose edges are all explicit: next is never taken
                node.next = following
            for name in ("then", "else", "default"):
                if name in node.explicit:
                    node.targets[name] = self._edge(node, name, node.explicit[name])
                else:  # the same edge as next, already recorded
                    node.targets[name] = node.next
            for key, target in node.cases.items():
                node.cases[key] = self._edge(node, child_path("cases", key), target)
            if node.error_next is not None:
                node.error_next = self._edge(node, "error_next", node.error_next)
            if node.body is not None:
                self.link(node.body)
        first = lst.nodes[0].name if lst.nodes else None
        if start is ABSENT or start is None:
            lst.start = first
        elif not isinstance(start, str):
            self.p.add("$.start", f"must be a step name, found {kind(start)}")
        elif start not in lst.by_name:
            self.p.add("$.start", self._missing_target(lst, start))
        else:
            lst.start = start
        self._cycles(lst)

    def _edge(self, node: _Node, field_name: str, target: str | None) -> str | None:
        if target is None:
            return None
        where = f"{node.path}.{field_name}"
        if target not in node.lst.by_name:
            self.p.add(where, self._missing_target(node.lst, target))
            return None
        node.edges.append((where, target))
        return target

    def _missing_target(self, lst: _List, target: str) -> str:
        message = f"no step '{target}' in this list{suggest(target, lst.by_name)}"
        if target in self.names:
            message += f" ('{target}' is at {self.names[target]}; edges stay inside their list)"
        return message

    def _cycles(self, lst: _List) -> None:
        state: dict[str, bool] = {}  # False: on the current path, True: done
        for root in lst.nodes:
            if root.name is None or root.name in state:
                continue
            trail = [root.name]
            stack = [iter(root.edges)]
            state[root.name] = False
            while stack:
                edge = next(stack[-1], None)
                if edge is None:
                    state[trail.pop()] = True
                    stack.pop()
                    continue
                where, target = edge
                seen = state.get(target)
                if seen is None:
                    state[target] = False
                    trail.append(target)
                    stack.append(iter(lst.by_name[target].edges))
                elif seen is False:
                    loop = [*trail[trail.index(target) :], target]
                    self.p.add(
                        where,
                        f"cycle: {' -> '.join(loop)} (a workflow runs forward; "
                        "repeat work with a loop step)",
                    )

    def _ancestors(self, node: _Node) -> set[str]:
        """Names of the steps of node's list from which some path leads to node."""
        if node.ancestors is None:
            lst = node.lst
            if lst.preds is None:
                lst.preds = {}
                for other in lst.nodes:
                    for _, target in other.edges:
                        lst.preds.setdefault(target, set()).add(cast(str, other.name))
            seen: set[str] = set()
            todo = list(lst.preds.get(cast(str, node.name), ()))
            while todo:
                name = todo.pop()
                if name not in seen:
                    seen.add(name)
                    todo.extend(lst.preds.get(name, ()))
            node.ancestors = seen
        return node.ancestors

    # -- inputs: references, schemas, loop bounds ----------------------------------------

    def check_inputs(self, lst: _List) -> None:
        for node in lst.nodes:
            where = child_path(node.path, "input")
            refs, errors = scan_references(node.input, where)
            for path, message in errors:
                self.p.add(path, message)
            for path, ref in refs:
                self._reference(node, path, ref)
            if node.info is not None and _plain_json(node.input):
                self._schema(node, node.info, where)
                if node.control == "loop" and isinstance(node.input, dict):
                    bound: Any = node.input.get("max_iterations")
                    limit = self.limits.max_loop_iterations
                    if is_number(bound) and bound > limit:
                        self.p.add(
                            child_path(where, "max_iterations"),
                            f"max_iterations {bound} is over the limit max_loop_iterations={limit}",
                        )
            if node.body is not None:
                self.check_inputs(node.body)

    def _reference(self, node: _Node, path: str, ref: Reference) -> None:
        if ref.root == "auth":
            if node.raw.get("auth") is None:
                self.p.add(path, f"{ref.text}: $.auth can only be used in a step that sets 'auth'")
            elif node.info is not None and not node.info.accepts_auth:
                self.p.add(
                    path, f"{ref.text}: connector '{node.connector}' takes no authentication"
                )
        elif ref.root in ("item", "index"):
            if node.lst.owner is None:
                self.p.add(path, f"{ref.text}: ${ref.root} is only available inside a loop body")
        elif ref.root == "steps" and node.name is not None:
            message = self._step_reference(node, cast(str, ref.path[0]))
            if message:
                self.p.add(path, f"{ref.text}: {message}")

    def _step_reference(self, node: _Node, target: str) -> str | None:
        """Why `node` cannot read step `target`'s output, or None when it can."""
        lst: _List | None = node.lst
        here: _Node | None = node
        visible: list[str] = []
        while lst is not None and here is not None:
            if target in lst.by_name:
                if lst.by_name[target] is node:
                    return "a step cannot read its own output"
                if lst.by_name[target] is here:
                    return f"a loop body cannot read its loop step '{target}' (use $.item, $.index)"
                if target not in self._ancestors(here):
                    return (
                        f"step '{target}' never runs before '{here.name}' (no path leads from it)"
                    )
                return None
            visible.extend(lst.by_name)
            here, lst = lst.owner, lst.parent
        if target in self.names:
            return f"step '{target}' is inside a loop body, which cannot be read from here"
        return f"unknown step '{target}'{suggest(target, visible)}"

    def _schema(self, node: _Node, info: OperationInfo, where: str) -> None:
        key = (info.connector, info.operation)
        validator = self._validators.get(key)
        if validator is None:
            validator = self._validators[key] = Draft202012Validator(info.input_schema)
        reported: set[tuple[str, str]] = set()

        def report(path: str, message: str) -> None:
            if (path, message) not in reported:
                reported.add((path, message))
                self.p.add(path, message)

        for err in validator.iter_errors(node.input):
            if is_dynamic(err.instance):
                continue
            if err.validator in _VALUE_DEPENDENT and _contains_dynamic(err.instance):
                continue
            branch = _CONDITIONAL.intersection(str(s) for s in err.absolute_schema_path)
            if branch and _contains_dynamic(node.input):
                continue
            path = where
            for segment in err.absolute_path:
                path = child_path(path, segment)
            instance, schema = err.instance, err.schema
            if err.validator == "required" and isinstance(instance, dict):
                for name in cast(list[str], err.validator_value):
                    if name not in instance:
                        report(child_path(path, name), "is required")
            elif err.validator == "additionalProperties" and isinstance(instance, dict):
                props = schema.get("properties", {}) if isinstance(schema, dict) else {}
                patterns = schema.get("patternProperties", {}) if isinstance(schema, dict) else {}
                for name in instance:
                    if name not in props and not any(re.search(p, name) for p in patterns):
                        report(
                            child_path(path, name), f"unknown field '{name}'{suggest(name, props)}"
                        )
            else:
                message = err.message
                report(path, message if len(message) <= 300 else message[:297] + "...")


def _takes_next(node: _Node) -> bool:
    """Whether the implicit `next` (the following step) is a path the step can take."""
    needed = {"branch": ("then", "else"), "switch": ("default",)}.get(node.control or "", ())
    return node.on_error == "continue" or any(n not in node.explicit for n in needed) or not needed


def _plain_json(value: Any) -> bool:
    """No non-string keys nor non-JSON values (already reported; they confuse schemas)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_plain_json(v) for v in value)
    return value is None or isinstance(value, str | int | float)


def _contains_dynamic(value: Any) -> bool:
    if isinstance(value, dict):
        return any(_contains_dynamic(v) for v in value.values())
    if isinstance(value, list):
        return any(_contains_dynamic(v) for v in value)
    return is_dynamic(value)


def build_graph(lst: _List) -> Graph:
    """The frozen graph of a list that validated cleanly."""
    steps: dict[str, Step] = {}
    for node in lst.nodes:
        info = cast(OperationInfo, node.info)
        control = info.control
        steps[cast(str, node.name)] = Step(
            name=cast(str, node.name),
            connector=info.connector,
            operation=info.operation,
            input=_copy(node.input),
            auth=node.auth,
            timeout=node.timeout,
            retry=node.retry,
            on_error=cast(Any, node.on_error),
            error_next=node.error_next,
            next=node.next,
            then=node.targets["then"] if control == "branch" else None,
            else_=node.targets["else"] if control == "branch" else None,
            cases=dict(node.cases) if control == "switch" else {},
            default=node.targets["default"] if control == "switch" else None,
            body=build_graph(node.body) if node.body is not None else None,
            control=control,
        )
    return Graph(start=lst.start, steps=steps)


def normalised_steps(lst: _List) -> list[dict[str, Any]]:
    """The step list as saved: as written, with each step's resolved operation filled in."""
    out: list[dict[str, Any]] = []
    for node in lst.nodes:
        step: dict[str, Any] = {}
        for key, value in node.raw.items():
            step[key] = (
                normalised_steps(node.body)
                if key == "steps" and node.body is not None
                else _copy(value)
            )
            if key == "connector" and node.info is not None:
                step["operation"] = node.info.operation
        out.append(step)
    return out
