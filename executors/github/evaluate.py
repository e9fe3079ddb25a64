"""Evaluating expressions: contexts, operators and GitHub's functions. Pure.

`Scope` carries the contexts (`github`, `env`, `matrix`, ...), the status the status
functions read (`success()`, `failure()`, `cancelled()`), and an optional `hashFiles`
implementation the executor supplies.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.github import values as v
from executors.github.errors import ExpressionError
from executors.github.syntax import (
    Binary,
    Call,
    Context,
    Index,
    Literal,
    Node,
    Not,
    Property,
    Star,
    parse,
)

STATUS_FUNCTIONS = frozenset({"success", "failure", "always", "cancelled"})
_FORMAT = re.compile(r"\{\{|\}\}|\{(\d+)\}|\{|\}")


@dataclass
class Scope:
    """What an expression may read."""

    contexts: dict[str, Any] = field(default_factory=dict)
    # `success`, `failure` or `cancelled`: the job's (or composite's) status so far.
    status: str = "success"
    hash_files: Callable[[list[str]], str] | None = None

    def with_contexts(self, **more: Any) -> Scope:
        """A copy with some contexts replaced."""
        return Scope({**self.contexts, **more}, self.status, self.hash_files)


class _Evaluator:
    def __init__(self, source: str, scope: Scope) -> None:
        self.source = source
        self.scope = scope

    def fail(self, reason: str) -> ExpressionError:
        return ExpressionError(self.source, reason)

    def eval(self, node: Node) -> Any:
        match node:
            case Literal():
                return node.value
            case Context():
                return self.context(node.name)
            case Property():
                return v.get_property(self.eval(node.target), node.name)
            case Index():
                return v.get_index(self.eval(node.target), self.eval(node.index))
            case Star():
                return v.star(self.eval(node.target))
            case Not():
                return not v.truthy(self.eval(node.operand))
            case Binary():
                return self.binary(node)
            case Call():
                return self.call(node)
        raise self.fail(f"cannot evaluate {node!r}")

    def context(self, name: str) -> Any:
        contexts = self.scope.contexts
        if name not in contexts:
            known = ", ".join(sorted(contexts))
            raise self.fail(f"unrecognized named-value {name!r} (available: {known})")
        return contexts[name]

    def binary(self, node: Binary) -> Any:
        left = self.eval(node.left)
        if node.op == "&&":
            return self.eval(node.right) if v.truthy(left) else left
        if node.op == "||":
            return left if v.truthy(left) else self.eval(node.right)
        right = self.eval(node.right)
        if node.op == "==":
            return v.loose_equal(left, right)
        if node.op == "!=":
            return not v.loose_equal(left, right)
        return v.loose_compare(left, right, node.op)

    def call(self, node: Call) -> Any:
        if node.name in STATUS_FUNCTIONS:
            if node.args:
                raise self.fail(f"{node.name}() takes no arguments")
            return self.status(node.name)
        function = FUNCTIONS.get(node.name)
        if function is None:
            raise self.fail(f"unknown function {node.name}()")
        low, high, implementation = function
        if not low <= len(node.args) <= high:
            raise self.fail(f"{node.name}() takes {low} to {high} arguments, got {len(node.args)}")
        args = [self.eval(arg) for arg in node.args]
        if node.name == "hashfiles":
            return self.hash_files(args)
        try:
            return implementation(*args)
        except (ValueError, TypeError) as exc:
            raise self.fail(f"{node.name}(): {exc}") from exc

    def status(self, name: str) -> bool:
        status = self.scope.status
        if name == "always":
            return True
        if name == "cancelled":
            return status == "cancelled"
        if name == "failure":
            return status == "failure"
        return status == "success"

    def hash_files(self, args: list[Any]) -> str:
        if self.scope.hash_files is None:
            raise self.fail("hashFiles() is not available here")
        return self.scope.hash_files([v.to_string(a) for a in args])


def _contains(search: Any, item: Any) -> bool:
    if isinstance(search, list):
        return any(v.loose_equal(element, item) for element in search)
    return v.to_string(item).casefold() in v.to_string(search).casefold()


def _starts_with(text: Any, prefix: Any) -> bool:
    return v.to_string(text).casefold().startswith(v.to_string(prefix).casefold())


def _ends_with(text: Any, suffix: Any) -> bool:
    return v.to_string(text).casefold().endswith(v.to_string(suffix).casefold())


def _format(template: Any, *args: Any) -> str:
    text = v.to_string(template)

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        if match.group(1) is None:
            raise ValueError(f"the format string {text!r} has an unmatched {token!r}")
        position = int(match.group(1))
        if position >= len(args):
            raise ValueError(f"the format string {text!r} refers to argument {position}")
        return v.to_string(args[position])

    return _FORMAT.sub(replace, text)


def _join(items: Any, separator: Any = ",") -> str:
    sep = v.to_string(separator)
    if isinstance(items, list):
        return sep.join(v.to_string(item) for item in items)
    return v.to_string(items)


def _from_json(text: Any) -> Any:
    source = v.to_string(text)
    if source.strip() == "":
        raise ValueError("empty input")
    return v.from_json(source)


def _unavailable(*_args: Any) -> Any:
    raise ValueError("not available")


FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "contains": (2, 2, _contains),
    "startswith": (2, 2, _starts_with),
    "endswith": (2, 2, _ends_with),
    "format": (1, 64, _format),
    "join": (1, 2, _join),
    "tojson": (1, 1, v.to_json),
    "fromjson": (1, 1, _from_json),
    "hashfiles": (1, 64, _unavailable),
}


def evaluate(source: str, scope: Scope) -> Any:
    """Evaluate one expression (the text inside `${{ }}`)."""
    return evaluate_node(source, parse(source), scope)


def evaluate_node(source: str, node: Node, scope: Scope) -> Any:
    """Evaluate an already parsed expression."""
    try:
        return _Evaluator(source, scope).eval(node)
    except RecursionError as exc:
        raise ExpressionError(source, "nested too deeply") from exc


def context_names(mapping: Mapping[str, Any]) -> list[str]:
    """Context names in a stable order (for messages)."""
    return sorted(mapping)
