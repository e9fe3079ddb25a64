"""From a `github.runner` job's input to what its runner needs: the workflow and job, the
run's identity, the `inputs` context, the strategy's combinations and the labels wanted.
Pure, once the workflow's text is at hand."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.github import values as v
from executors.github.contexts import (
    RunInfo,
    declared_inputs,
    github_context,
    input_defaults,
)
from executors.github.errors import WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.matrix import Combination, Strategy, strategy_of
from executors.github.planner import runs_on_labels, status_of
from executors.github.templates import evaluate_tree
from executors.github.workflow import Job, Workflow, load_workflow, select_job
from schemas.kinds import GithubRunnerInput

DISPATCH_EVENTS = frozenset({"workflow_dispatch", "workflow_call"})


@dataclass(frozen=True)
class Resolved:
    """A job ready to be matched to a runner and run."""

    workflow: Workflow
    job: Job
    info: RunInfo
    inputs: dict[str, Any]
    strategy: Strategy
    combinations: tuple[Combination, ...]
    labels: tuple[str, ...]
    needs_status: str


def run_info(spec: GithubRunnerInput, job_id: str) -> RunInfo:
    """The run's identity from the input (a run id derived from the job when absent)."""
    run_id = spec.run_id or str(zlib.crc32(job_id.encode()) % 1_000_000_000 + 1)
    return RunInfo(
        event_name=spec.event_name,
        event=dict(spec.event),
        ref=spec.ref,
        sha=spec.sha,
        repository=spec.repository or "chaser/repository",
        actor=spec.actor or "chaser",
        run_id=run_id,
        run_number=spec.run_number,
        run_attempt=spec.run_attempt,
    )


def needs_status(spec: GithubRunnerInput) -> str:
    """The job-level status: given by the submitter (every transitive need), else from the
    direct needs' results."""
    if spec.needs_status is not None:
        return spec.needs_status
    results = [
        v.to_string(need.get("result")) if isinstance(need, Mapping) else "success"
        for need in spec.needs.values()
    ]
    return status_of(results)


def resolve(spec: GithubRunnerInput, text: str, source: str, job_id: str) -> Resolved:
    """Load the workflow, pick the job, compute inputs, combinations and labels."""
    workflow = load_workflow(text, source)
    job = select_job(workflow, spec.job)
    if job.uses is not None:
        raise WorkflowInvalid(
            f"job {job.id} calls the reusable workflow {job.uses}: run the workflow with"
            " `chaser runner run-workflow`, which runs each called job as its own job"
        )
    info = run_info(spec, job_id)
    github = github_context(info, workflow=workflow.name, job=job.id)
    base = {"github": github, "vars": dict(spec.vars), "needs": dict(spec.needs), "env": {}}
    given: Mapping[str, Any] = spec.inputs
    event_inputs = info.event.get("inputs")
    if not given and info.event_name in DISPATCH_EVENTS and isinstance(event_inputs, Mapping):
        given = event_inputs
    declared = declared_inputs(workflow, called=spec.workflow_call)
    inputs = input_defaults(declared, given, Scope({**base, "inputs": {}}))
    scope = Scope({**base, "inputs": inputs, "secrets": {}})
    strategy = strategy_of(job.strategy, scope)
    combinations = (dict(spec.matrix),) if spec.matrix is not None else strategy.combinations
    labels: list[str] = []
    for combination in combinations:
        value = evaluate_tree(job.runs_on, scope.with_contexts(matrix=combination))
        for label in runs_on_labels(value):
            if label.casefold() not in {known.casefold() for known in labels}:
                labels.append(label)
    return Resolved(
        workflow=workflow,
        job=job,
        info=info,
        inputs=inputs,
        strategy=strategy,
        combinations=combinations,
        labels=tuple(labels),
        needs_status=needs_status(spec),
    )


def strategy_context(resolved: Resolved, index: int) -> dict[str, Any]:
    """The `strategy` context of one combination."""
    total = len(resolved.strategy.combinations)
    return {
        "fail-fast": resolved.strategy.fail_fast,
        "job-index": index,
        "job-total": total,
        "max-parallel": resolved.strategy.max_parallel or total,
    }


def combination_index(resolved: Resolved, combination: Combination) -> int:
    """Where a combination sits in the job's strategy (0 when it is not found)."""
    for index, known in enumerate(resolved.strategy.combinations):
        if known == combination:
            return index
    return 0
