"""`strategy.matrix`: evaluation and expansion into combinations, as GitHub documents it;
and the strategy's `fail-fast` and `max-parallel`. Pure.

Expansion: the product of the dimensions, minus every combination an `exclude` entry
matches (all its keys equal), then each `include` entry is merged into every combination
whose original dimension values it does not contradict (added keys may be overwritten); an
entry that fits no combination becomes a combination of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.github import values as v
from executors.github.errors import WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.templates import evaluate_string, evaluate_tree, has_expression

MAX_COMBINATIONS = 256
Combination = dict[str, Any]


@dataclass(frozen=True)
class Strategy:
    """A job's evaluated strategy."""

    combinations: tuple[Combination, ...]
    fail_fast: bool
    max_parallel: int | None
    has_matrix: bool


def _dimension(raw: Any, scope: Scope) -> list[Any]:
    """One dimension's values; an item that is an expression yielding an array is spliced."""
    if isinstance(raw, str):
        value = evaluate_string(raw, scope)
        return list(value) if isinstance(value, list) else [value]
    if not isinstance(raw, list):
        return [evaluate_tree(raw, scope)]
    items: list[Any] = []
    for item in raw:
        value = evaluate_tree(item, scope)
        if has_expression(item) and isinstance(value, list):
            items.extend(value)
        else:
            items.append(value)
    return items


def evaluate_matrix(raw: Any, scope: Scope) -> dict[str, Any]:
    """The matrix with its expressions evaluated (keys included)."""
    if isinstance(raw, str):
        value = evaluate_string(raw, scope)
        if not isinstance(value, Mapping):
            raise WorkflowInvalid(f"`strategy.matrix` must be a mapping, got {v.to_string(value)}")
        raw = value
    if not isinstance(raw, Mapping):
        raise WorkflowInvalid("`strategy.matrix` must be a mapping")
    matrix: dict[str, Any] = {}
    for key, value in raw.items():
        name = v.to_string(evaluate_string(key, scope)) if isinstance(key, str) else str(key)
        if name in ("include", "exclude"):
            entries = evaluate_tree(value, scope)
            matrix[name] = entries if isinstance(entries, list) else [entries]
        else:
            matrix[name] = _dimension(value, scope)
    return matrix


def _matches(combination: Mapping[str, Any], entry: Mapping[str, Any]) -> bool:
    return all(k in combination and _same(combination[k], val) for k, val in entry.items())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Mapping | list) or isinstance(b, Mapping | list):
        return bool(a == b)
    return v.to_string(a) == v.to_string(b)


def expand(matrix: Mapping[str, Any]) -> list[Combination]:
    """Every combination of an evaluated matrix."""
    dimensions = {k: val for k, val in matrix.items() if k not in ("include", "exclude")}
    excludes = [e for e in matrix.get("exclude") or [] if isinstance(e, Mapping)]
    includes = [e for e in matrix.get("include") or [] if isinstance(e, Mapping)]
    combos: list[Combination] = []
    if dimensions:
        keys = list(dimensions)
        for values in itertools.product(*(dimensions[k] for k in keys)):
            combos.append(dict(zip(keys, values, strict=True)))
        combos = [c for c in combos if not any(_matches(c, e) for e in excludes)]
    extra: list[Combination] = []
    for entry in includes:
        matched = False
        for combo in combos:
            if all(_same(combo[k], val) for k, val in entry.items() if k in dimensions):
                combo.update(entry)
                matched = True
        if not matched:
            extra.append(dict(entry))
    combos.extend(extra)
    if len(combos) > MAX_COMBINATIONS:
        raise WorkflowInvalid(f"the matrix has {len(combos)} combinations (at most 256)")
    return combos


def strategy_of(raw: Any, scope: Scope) -> Strategy:
    """A job's strategy: its combinations (one empty one without a matrix) and settings."""
    if raw is None:
        return Strategy(combinations=({},), fail_fast=True, max_parallel=None, has_matrix=False)
    strategy = raw
    if isinstance(raw, str):
        strategy = evaluate_string(raw, scope)
    if not isinstance(strategy, Mapping):
        raise WorkflowInvalid("`strategy` must be a mapping")
    combos: list[Combination] = [{}]
    has_matrix = strategy.get("matrix") is not None
    if has_matrix:
        combos = expand(evaluate_matrix(strategy["matrix"], scope))
        if not combos:
            raise WorkflowInvalid("the matrix has no combination")
    fail_fast = v.truthy(evaluate_tree(strategy.get("fail-fast", True), scope))
    parallel = evaluate_tree(strategy.get("max-parallel"), scope)
    max_parallel = int(v.to_number(parallel)) if parallel not in (None, "") else None
    return Strategy(
        combinations=tuple(combos),
        fail_fast=fail_fast,
        max_parallel=max_parallel if max_parallel and max_parallel > 0 else None,
        has_matrix=has_matrix,
    )


def select(combinations: tuple[Combination, ...], filters: Mapping[str, list[str]]) -> list[int]:
    """Indexes of the combinations a `--matrix key=value` filter keeps (a key a combination
    lacks does not filter it; values compare as strings)."""
    kept = []
    for index, combo in enumerate(combinations):
        if all(
            key not in combo or v.to_string(combo[key]) in wanted for key, wanted in filters.items()
        ):
            kept.append(index)
    return kept
