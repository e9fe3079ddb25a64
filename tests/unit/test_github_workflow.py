"""Workflows as data: loading and GitHub's syntax rules, matrices, planning in `needs`
order, job status, reusable-workflow calls, runner labels and resolution of a job."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from executors.github import planner
from executors.github.actions import parse_action, parse_uses
from executors.github.errors import PlanError, WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.matrix import expand, select, strategy_of
from executors.github.planner import JobResult
from executors.github.resolve import resolve
from executors.github.runners import RunnerConfigError, parse_runners, pick
from executors.github.workflow import load_workflow
from schemas.kinds import GithubRunnerInput

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "actions",
    "commands",
    "contexts",
    "errors",
    "evaluate",
    "masking",
    "matrix",
    "planner",
    "resolve",
    "runners",
    "shells",
    "syntax",
    "templates",
    "values",
    "workflow",
    "yamlload",
]


@pytest.mark.parametrize("name", PURE)
def test_the_core_modules_do_no_io(name: str) -> None:
    tree = ast.parse((ROOT / "executors" / "github" / f"{name}.py").read_text())
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    forbidden = {"asyncio", "os", "socket", "subprocess", "aiodocker", "nats", "time", "structlog"}
    assert not {m.split(".")[0] for m in imported} & forbidden
    assert not any(m.startswith(("executors.docker", "executors.sandbox")) for m in imported)


def test_on_is_a_key_and_yaml_12_booleans() -> None:
    workflow = load_workflow(
        "on: [push, pull_request]\njobs:\n  a:\n    runs-on: x\n    steps:\n      - run: echo yes\n"
    )
    assert workflow.on == {"push": None, "pull_request": None}
    assert workflow.jobs["a"].steps[0].run == "echo yes"
    scalar = load_workflow(
        "on: workflow_dispatch\njobs:\n  a:\n    runs-on: x\n    steps: [{run: 'true'}]\n"
    )
    assert scalar.triggered_by("workflow_dispatch") and not scalar.triggered_by("push")


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ("-\n      - run: x", "invalid Step 0: missing run or uses key"),
        ("- name: both\n        run: x\n        uses: a/b@v1", "Invalid run/uses syntax"),
        ("- name: empty", "Invalid run/uses syntax"),
        ("- uses: actions/checkout", "Expected format {org}/{repo}[/path]@ref"),
    ],
)
def test_invalid_steps_are_rejected(steps: str, message: str) -> None:
    text = f"on: push\njobs:\n  t:\n    runs-on: x\n    steps:\n      {steps}\n"
    with pytest.raises(WorkflowInvalid, match=message.replace("[", r"\[").replace("{", r"\{")):
        load_workflow(text)


@pytest.mark.parametrize("job_id", ["1abc", "a.b", "has space"])
def test_invalid_job_ids(job_id: str) -> None:
    with pytest.raises(WorkflowInvalid, match="is invalid"):
        load_workflow(
            f"name: w\non: push\njobs:\n  '{job_id}':\n    runs-on: x\n    steps: [{{run: a}}]\n"
        )


def test_empty_workflow() -> None:
    with pytest.raises(WorkflowInvalid, match="file is empty"):
        load_workflow("", "push.yml")


def test_matrix_include_exclude_as_github_documents() -> None:
    matrix = {
        "fruit": ["apple", "pear"],
        "animal": ["cat", "dog"],
        "exclude": [{"fruit": "pear", "animal": "dog"}],
        "include": [
            {"color": "green"},
            {"color": "pink", "animal": "cat"},
            {"fruit": "apple", "shape": "circle"},
            {"fruit": "banana"},
            {"fruit": "banana", "animal": "cat"},
        ],
    }
    assert expand(matrix) == [
        {"fruit": "apple", "animal": "cat", "color": "pink", "shape": "circle"},
        {"fruit": "apple", "animal": "dog", "color": "green", "shape": "circle"},
        {"fruit": "pear", "animal": "cat", "color": "pink"},
        {"fruit": "banana"},
        {"fruit": "banana", "animal": "cat"},
    ]


def test_include_only_matrix_and_expression_matrices() -> None:
    assert expand({"include": [{"a": 1}, {"b": 2}]}) == [{"a": 1}, {"b": 2}]
    scope = Scope({"needs": {"p": {"outputs": {"m": '{"x": [1, 2]}', "key": "k"}}}})
    strategy = strategy_of({"matrix": "${{ fromJSON(needs.p.outputs.m) }}"}, scope)
    assert strategy.combinations == ({"x": 1}, {"x": 2})
    spliced = strategy_of(
        {"matrix": {"${{ needs.p.outputs.key }}": [1, "${{ fromJSON('[2, 3]') }}"]}}, scope
    )
    assert spliced.combinations == ({"k": 1}, {"k": 2}, {"k": 3})
    assert strategy_of(None, scope).combinations == ({},)
    assert strategy_of({"fail-fast": False, "max-parallel": 2}, scope).max_parallel == 2


@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=4, unique=True),
    st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True),
)
def test_the_product_has_every_combination_once(numbers: list[int], letters: list[str]) -> None:
    combos = expand({"n": numbers, "l": letters})
    assert len(combos) == len(numbers) * len(letters)
    assert len({(c["n"], c["l"]) for c in combos}) == len(combos)


def test_matrix_filters_compare_as_strings() -> None:
    combos = ({"node": 8, "os": "a"}, {"node": 10, "os": "a"}, {"os": "b"})
    assert select(combos, {"node": ["8"]}) == [0, 2]


WORKFLOW = """
name: w
on: push
jobs:
  a: {runs-on: x, steps: [{run: a}]}
  b: {runs-on: x, needs: a, steps: [{run: b}]}
  c: {runs-on: x, needs: [a, b], steps: [{run: c}]}
  d: {runs-on: x, steps: [{run: d}]}
"""


def test_stages_follow_needs() -> None:
    workflow = load_workflow(WORKFLOW)
    assert planner.stages(workflow, "push") == [["a", "d"], ["b"], ["c"]]
    assert planner.stages(workflow, "push", ["b"]) == [["a"], ["b"]]
    assert planner.stages(workflow, "pull_request") == []
    assert planner.ancestors(workflow, "c") == {"a", "b"}


def test_unknown_and_circular_needs() -> None:
    missing = load_workflow(
        "name: m\non: push\njobs:\n  s: {runs-on: x, needs: first, steps: [{run: a}]}\n", "m.yml"
    )
    with pytest.raises(PlanError, match=r"unable to build dependency graph for m \(m.yml\)"):
        planner.stages(missing, "push")
    circular = load_workflow(
        "on: push\njobs:\n  a: {runs-on: x, needs: b, steps: [{run: a}]}\n"
        "  b: {runs-on: x, needs: a, steps: [{run: a}]}\n"
    )
    with pytest.raises(PlanError, match="need each other"):
        planner.stages(circular, "push")


def test_job_status_and_results() -> None:
    assert planner.status_of(["success", "skipped"]) == "skipped"
    assert planner.status_of(["success", "failure"]) == "failure"
    assert planner.status_of([]) == "success"
    legs = [JobResult("success", {"o": "1"}), JobResult("failure", {"o": "", "p": "2"})]
    assert planner.combine(legs) == JobResult("failure", {"o": "1", "p": "2"})
    assert planner.runs_on_labels({"group": "g", "labels": ["a"]}) == ["a", "group:g"]


def test_reusable_workflow_calls() -> None:
    called = load_workflow(
        "on:\n  workflow_call:\n    outputs:\n      out: {value: '${{ jobs.j.outputs.x }}'}\n"
        "jobs:\n  j: {runs-on: x, steps: [{run: a}]}\n"
    )
    caller = load_workflow(
        "on: push\njobs:\n  c:\n    uses: ./.github/workflows/r.yml\n"
        "    with: {n: '${{ 1 }}'}\n    secrets: inherit\n"
    ).jobs["c"]
    scope = Scope({"github": {}})
    assert planner.call_inputs(called, caller, scope) == {"n": 1}
    assert planner.call_secrets(caller, {"S": "v"}, scope) == {"S": "v"}
    assert planner.call_outputs(called, {"j": JobResult("success", {"x": "y"})}, scope) == {
        "out": "y"
    }
    with pytest.raises(WorkflowInvalid, match="not a reusable workflow"):
        planner.call_inputs(load_workflow(WORKFLOW), caller, scope)


def test_runner_label_sets() -> None:
    runners = parse_runners(
        "self-hosted,Linux,chaser=img:1,capacity=2;gpu,name=big,group=ml", "default"
    )
    assert [(r.name, r.labels, r.image, r.capacity) for r in runners] == [
        ("chaser-1", ("self-hosted", "Linux"), "img:1", 2),
        ("big", ("gpu", "group:ml"), "default", 1),
    ]
    assert pick(runners, ["linux"], {}) == runners[0]
    assert pick(runners, ["linux"], {"chaser-1": 2}) is None
    assert pick(runners, ["gpu", "linux"], {}) is None
    assert parse_runners("", "img")[0].labels == ("self-hosted", "linux", "x64")
    with pytest.raises(RunnerConfigError):
        parse_runners("a,bogus=1", "img")


def test_uses_and_action_definitions() -> None:
    assert parse_uses("actions/checkout@v4").kind == "checkout"
    assert parse_uses("./").kind == "local" and parse_uses("./a/../b").path == "b"
    assert parse_uses("docker://alpine:3").image == "alpine:3"
    assert parse_uses("o/r/sub/dir@main").path == "sub/dir"
    with pytest.raises(WorkflowInvalid):
        parse_uses("./../outside")
    action = parse_action(
        "runs:\n  using: composite\n  steps:\n    - run: x\n      shell: sh\n", "a"
    )
    assert action.using == "composite" and len(action.steps) == 1
    for text in ("runs:\n  using: composite\n", "runs:\n  using: composite\n  steps: [{run: x}]\n"):
        with pytest.raises(WorkflowInvalid):
            parse_action(text, "a")


def test_resolving_a_job_computes_inputs_and_labels() -> None:
    text = (
        "on:\n  workflow_dispatch:\n    inputs:\n      flag: {type: boolean}\n"
        "      n: {type: number, default: 3}\n"
        "jobs:\n  j:\n    runs-on: ['${{ matrix.os }}', x64]\n"
        "    strategy: {matrix: {os: [linux, other]}}\n    steps: [{run: a}]\n"
    )
    spec = GithubRunnerInput(
        workspace="w",
        workflow=text,
        event_name="workflow_dispatch",
        event={"inputs": {"flag": "true"}},
    )
    resolved = resolve(spec, text, "w.yml", "job_1")
    assert resolved.inputs == {"flag": True, "n": 3}
    assert resolved.labels == ("linux", "x64", "other")
    assert len(resolved.combinations) == 2
    one = resolve(
        GithubRunnerInput(workspace="w", workflow=text, matrix={"os": "linux"}),
        text,
        "w.yml",
        "job_1",
    )
    assert one.labels == ("linux", "x64")
