"""The expression language: literals, contexts, operators, GitHub's coercions, functions,
`${{ }}` templates and `if:` conditions."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executors.github import values as v
from executors.github.errors import ExpressionError
from executors.github.evaluate import Scope, evaluate
from executors.github.templates import (
    evaluate_condition,
    evaluate_string,
    evaluate_tree,
    segments,
)

SCOPE = Scope(
    {
        "github": {"event_name": "push", "event": {"labels": [{"name": "a"}, {"name": "b"}]}},
        "env": {"ACT": "true", "EMPTY": "", "Mixed": "x"},
        "matrix": {"os": "linux", "node": 8},
        "steps": {"one": {"outputs": {"v": "1"}, "outcome": "failure", "conclusion": "success"}},
        "inputs": {"flag": True, "n": 1},
    }
)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("null", None),
        ("true && 'yes'", "yes"),
        ("false || 'fallback'", "fallback"),
        ("0x10", 16),
        ("-1.5", -1.5),
        ("1e3", 1000.0),
        ("'it''s'", "it's"),
        ("github.event_name", "push"),
        ("github['event_name']", "push"),
        ("github.event.labels.*.name", ["a", "b"]),
        ("github.event.labels[1].name", "b"),
        ("github.nothing.deeper", None),
        ("env.mixed", "x"),
        ("steps.one.outputs.v == 1", True),
        ("'ABC' == 'abc'", True),
        ("'1' == 1", True),
        ("null == 0", True),
        ("true == 1", True),
        ("'' == 0", True),
        ("'abc' == 0", False),
        ("'a' < 'B'", True),
        ("2 > '10'", False),
        ("!env.EMPTY", True),
        ("!!env.ACT", True),
        ("matrix.node == 8 && matrix.os", "linux"),
        ("(1 == 2) || (3 == 3)", True),
        ("contains('Hello World', 'world')", True),
        ("contains(github.event.labels.*.name, 'B')", True),
        ("startsWith('refs/heads/main', 'REFS/')", True),
        ("endsWith('file.yml', '.YML')", True),
        ("format('{0}-{1} {{x}}', 'a', 2)", "a-2 {x}"),
        ("join(github.event.labels.*.name, ', ')", "a, b"),
        ("join('single')", "single"),
        ("fromJSON('{\"a\": [1, 2]}').a[1]", 2),
        ("toJSON(inputs.n)", "1"),
        ("inputs.flag == true", True),
    ],
)
def test_expressions(source: str, expected: Any) -> None:
    assert evaluate(source, SCOPE) == expected


def test_objects_compare_by_identity_and_nan_is_never_equal() -> None:
    assert evaluate("github.event == github.event", SCOPE) is True
    assert evaluate("fromJSON('{}') == fromJSON('{}')", SCOPE) is False
    assert evaluate("NaN == NaN", SCOPE) is False


def test_to_json_is_pretty_printed() -> None:
    assert evaluate("toJSON(matrix)", SCOPE) == '{\n  "os": "linux",\n  "node": 8\n}'


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("", "empty"),
        ("1 ==", "unexpected"),
        ("foo(1)", "unknown function"),
        ("nosuch.context", "unrecognized named-value"),
        ("format('{0}')", "refers to argument 0"),
        ("fromJSON('{')", "fromjson"),
        ("contains('a')", "takes 2 to 2"),
        ("'unterminated", "unexpected character"),
        ("success(1)", "takes no arguments"),
    ],
)
def test_invalid_expressions_name_the_expression_and_the_reason(source: str, reason: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate(source, SCOPE)
    assert reason in str(caught.value)
    assert f"`{source}`" in str(caught.value)


def test_templates_keep_types_alone_and_interpolate_otherwise() -> None:
    assert evaluate_string("${{ true }}", SCOPE) is True
    assert evaluate_string("${{ fromJSON('[1]') }}", SCOPE) == [1]
    assert evaluate_string("os=${{ matrix.os }} n=${{ matrix.node }}!", SCOPE) == "os=linux n=8!"
    assert evaluate_string("${{ '}}' }}", SCOPE) == "}}"
    assert evaluate_string("${{ '${{ inner }}' }}", SCOPE) == "${{ inner }}"
    assert evaluate_string("no expressions", SCOPE) == "no expressions"
    assert segments("a${{ b }}c") == [(False, "a"), (True, "b"), (False, "c")]
    with pytest.raises(ExpressionError):
        evaluate_string("${{ never closed", SCOPE)


def test_trees_evaluate_keys_and_insert() -> None:
    tree = {
        "${{ matrix.os }}": "${{ matrix.node }}",
        "plain": ["${{ github.event_name }}", 3],
        "${{ insert }}": {"merged": True},
    }
    assert evaluate_tree(tree, SCOPE) == {"linux": 8, "plain": ["push", 3], "merged": True}


@pytest.mark.parametrize(
    ("condition", "status", "expected"),
    [
        (None, "success", True),
        (None, "failure", False),
        ("env.ACT", "success", True),
        ("env.ACT", "failure", False),
        ("${{ !env.ACT }}", "success", False),
        ("failure()", "failure", True),
        ("failure()", "success", False),
        ("always()", "cancelled", True),
        ("cancelled()", "cancelled", True),
        ("success() || failure()", "failure", True),
        ("steps.one.outcome == 'failure'", "success", True),
        ("!cancelled() && always()", "cancelled", False),
    ],
)
def test_conditions_default_to_success(condition: Any, status: str, expected: bool) -> None:
    scope = Scope(SCOPE.contexts, status=status)
    assert evaluate_condition(condition, scope) is expected


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(json_values)
def test_to_json_then_from_json_round_trips(value: Any) -> None:
    scope = Scope({"x": {"value": value}})
    assert evaluate("fromJSON(toJSON(x.value))", scope) == value


@given(st.text(max_size=30))
def test_string_literals_round_trip(text: str) -> None:
    literal = "'" + text.replace("'", "''") + "'"
    assert evaluate(literal, Scope({})) == text


@given(st.integers(-(10**9), 10**9))
def test_numbers_equal_their_strings(number: int) -> None:
    assert v.loose_equal(number, str(number))
    assert v.to_string(float(number)) == str(number)


@given(json_values)
def test_truthiness_matches_github(value: Any) -> None:
    falsy = value is None or value is False or value == "" or (v.is_number(value) and value == 0)
    assert v.truthy(value) is (not falsy)


@given(st.text(max_size=12), st.text(max_size=12))
def test_string_equality_ignores_case(a: str, b: str) -> None:
    assert v.loose_equal(a, b) == (a.casefold() == b.casefold())


def test_coercions() -> None:
    assert math.isnan(v.to_number("abc"))
    assert v.to_number(" 0x1F ") == 31
    assert v.to_number("") == 0
    assert v.to_string(1.5) == "1.5" and v.to_string(2.0) == "2" and v.to_string([1]) == "Array"
    assert json.loads(v.to_json({"n": 1.0})) == {"n": 1}
