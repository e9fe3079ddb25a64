"""`chaser runner run-workflow`'s orchestration against a fake API: needs order, outputs
and results passed along, job-level `if`, matrices with fail-fast, reusable workflows."""

from __future__ import annotations

from typing import Any

from cli.workflow_run import Call, RunOptions, WorkflowRun
from executors.github.contexts import RunInfo
from executors.github.workflow import load_workflow


class FakeApi:
    """Answers `github.runner` jobs at once, failing those the test says."""

    def __init__(self, fail: set[str], outputs: dict[str, dict[str, str]]) -> None:
        self.fail = fail
        self.outputs = outputs
        self.created: list[dict[str, Any]] = []
        self.cancelled: list[str] = []

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body["input"])
        return {"id": f"job_{len(self.created)}"}

    def get_job(self, job_id: str) -> dict[str, Any]:
        spec = self.created[int(job_id.split("_")[1]) - 1]
        label = spec["job"] + (f"[{spec['matrix']}]" if "matrix" in spec else "")
        failed = spec["job"] in self.fail or label in self.fail
        conclusion = "failure" if failed else "success"
        return {
            "status": "failed" if failed else "succeeded",
            "result": {"conclusion": conclusion, "outputs": self.outputs.get(spec["job"], {})},
            "error": {"code": "step_failed", "message": "boom"} if failed else None,
        }

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        self.cancelled.append(job_id)
        return {}


WORKFLOW = """
on: push
jobs:
  build:
    runs-on: x
    outputs: {v: x}
    steps: [{run: a}]
  test:
    needs: build
    runs-on: x
    strategy: {matrix: {n: [1, 2, 3]}, max-parallel: 1}
    steps: [{run: a}]
  deploy:
    needs: test
    runs-on: x
    steps: [{run: a}]
  notify:
    needs: deploy
    if: always()
    runs-on: x
    steps: [{run: a}]
  call:
    needs: build
    uses: ./reusable.yml
    with: {who: '${{ needs.build.outputs.v }}'}
"""
REUSABLE = """
on:
  workflow_call:
    inputs: {who: {type: string}}
    outputs: {said: {value: '${{ jobs.inner.outputs.o }}'}}
jobs:
  inner:
    runs-on: x
    steps: [{run: a}]
"""


def run(fail: set[str]) -> tuple[WorkflowRun, FakeApi]:
    api = FakeApi(fail, {"build": {"v": "1.0"}, "inner": {"o": "hi"}})
    options = RunOptions(workspace="w", event="push", payload={}, info=RunInfo())
    files = {"ci.yml": WORKFLOW, "reusable.yml": REUSABLE}
    flow = WorkflowRun(api, options, files.__getitem__)  # type: ignore[arg-type]
    flow.plan(load_workflow(WORKFLOW, "ci.yml"), "ci.yml", [], Call(inputs={}, secrets={}))
    flow.run()
    return flow, api


def test_a_green_run_passes_needs_and_outputs_along() -> None:
    flow, api = run(set())
    assert flow.succeeded()
    test_inputs = [c for c in api.created if c["job"] == "test"]
    assert [c["matrix"] for c in test_inputs] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert test_inputs[0]["needs"] == {"build": {"result": "success", "outputs": {"v": "1.0"}}}
    inner = next(c for c in api.created if c["job"] == "inner")
    assert inner["inputs"] == {"who": "1.0"} and inner["workflow_call"] is True
    assert inner["workflow_path"] == "reusable.yml"
    results = {n.key: n.result.result for n in flow.nodes.values() if n.result}
    assert results["call"] == "success" and flow.nodes["call"].result.outputs == {"said": "hi"}


def test_a_failed_leg_cancels_the_rest_and_skips_dependents() -> None:
    flow, api = run({"test[{'n': 1}]"})
    assert not flow.succeeded()
    legs = [(leg.matrix, leg.result) for leg in flow.nodes["test"].legs]
    assert legs == [({"n": 1}, "failure"), ({"n": 2}, "cancelled"), ({"n": 3}, "cancelled")]
    assert flow.nodes["deploy"].result.result == "skipped"
    notify = next(c for c in api.created if c["job"] == "notify")
    assert notify["needs_status"] == "failure"
    assert {r["job"]: r["conclusion"] for r in flow.rows() if r["job"] == "deploy"} == {
        "deploy": "skipped"
    }
