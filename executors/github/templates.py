"""`${{ }}` in workflow values: finding expressions in strings, evaluating strings, trees
and `if:` conditions. Pure.

A string that is exactly one `${{ expr }}` keeps the expression's type (`${{ true }}` is a
boolean, `${{ fromJSON(x) }}` an object); anything else is interpolated into a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from executors.github import values as v
from executors.github.errors import ExpressionError
from executors.github.evaluate import STATUS_FUNCTIONS, Scope, evaluate, evaluate_node
from executors.github.syntax import calls, parse

OPEN, CLOSE = "${{", "}}"
INSERT = "insert"


def _end_of(text: str, start: int) -> int:
    """Index of the `}}` closing the expression whose body starts at `start` (quotes are
    skipped, so `${{ '}}' }}` works); -1 when it never closes."""
    pos, quoted = start, False
    while pos < len(text):
        char = text[pos]
        if char == "'":
            quoted = not quoted  # '' inside a string toggles twice: still inside
        elif not quoted and text.startswith(CLOSE, pos):
            return pos
        pos += 1
    return -1


def segments(text: str) -> list[tuple[bool, str]]:
    """The string cut into (is_expression, text) parts; ExpressionError when unclosed."""
    parts: list[tuple[bool, str]] = []
    pos = 0
    while True:
        start = text.find(OPEN, pos)
        if start < 0:
            if pos < len(text):
                parts.append((False, text[pos:]))
            return parts
        if start > pos:
            parts.append((False, text[pos:start]))
        end = _end_of(text, start + len(OPEN))
        if end < 0:
            raise ExpressionError(text, "the expression is not closed with '}}'")
        parts.append((True, text[start + len(OPEN) : end].strip()))
        pos = end + len(CLOSE)


def has_expression(value: Any) -> bool:
    """Whether a string holds `${{`."""
    return isinstance(value, str) and OPEN in value


def evaluate_string(text: str, scope: Scope) -> Any:
    """A string with its expressions evaluated (typed when it is one expression alone)."""
    if OPEN not in text:
        return text
    parts = segments(text)
    if len(parts) == 1 and parts[0][0]:
        return evaluate(parts[0][1], scope)
    return "".join(
        v.to_string(evaluate(body, scope)) if is_expr else body for is_expr, body in parts
    )


def evaluate_text(value: Any, scope: Scope) -> str:
    """A value evaluated and converted to a string (null is '')."""
    if value is None:
        return ""
    if isinstance(value, str):
        return v.to_string(evaluate_string(value, scope))
    return v.to_string(evaluate_tree(value, scope))


def evaluate_tree(value: Any, scope: Scope) -> Any:
    """Evaluate every string of a YAML value, keys included; `${{ insert }}` keys merge
    their mapping into the parent."""
    if isinstance(value, str):
        return evaluate_string(value, scope)
    if isinstance(value, list):
        return [evaluate_tree(item, scope) for item in value]
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if _is_insert(key):
                merged = evaluate_tree(item, scope)
                if not isinstance(merged, Mapping):
                    raise ExpressionError(str(key), "`insert` needs a mapping")
                result.update(merged)
                continue
            name = evaluate_string(key, scope) if isinstance(key, str) else key
            result[v.to_string(name)] = evaluate_tree(item, scope)
        return result
    return value


def _is_insert(key: Any) -> bool:
    if not isinstance(key, str) or not key.startswith(OPEN):
        return False
    parts = segments(key)
    return len(parts) == 1 and parts[0][0] and parts[0][1].lower() == INSERT


def condition_source(raw: Any) -> str | None:
    """The expression of an `if:` (its `${{ }}` removed); None for a plain string with
    text around expressions (evaluated as a template instead)."""
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if raw is None:
        return ""
    if not isinstance(raw, str):
        return v.to_string(raw)
    text = raw.strip()
    if OPEN not in text:
        return text
    parts = segments(text)
    if len(parts) == 1 and parts[0][0]:
        return parts[0][1]
    return None


def evaluate_condition(raw: Any, scope: Scope) -> bool:
    """An `if:`: empty means `success()`, and an expression without a status function
    is `success() && (expression)`."""
    source = condition_source(raw)
    if source is None:
        return v.truthy(evaluate_string(str(raw), scope))
    if source == "":
        source = "success()"
    node = parse(source)
    if not calls(node) & STATUS_FUNCTIONS and scope.status != "success":
        return False
    return v.truthy(evaluate_node(source, node, scope))
