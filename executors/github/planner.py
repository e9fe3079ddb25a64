"""Whole workflows: which jobs run for an event, in `needs` order; the `needs` context and
job-level status; job-level `if`; results of matrix jobs and reusable-workflow calls. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.github import values as v
from executors.github.errors import PlanError, WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.templates import evaluate_condition, evaluate_text, evaluate_tree
from executors.github.workflow import Job, Workflow

SUCCESS, FAILURE, CANCELLED, SKIPPED = "success", "failure", "cancelled", "skipped"


@dataclass
class JobResult:
    """How a workflow job (all its matrix legs) ended, as the `needs` context shows it."""

    result: str
    outputs: dict[str, str] = field(default_factory=dict)

    def as_need(self) -> dict[str, Any]:
        """The job's entry in a dependent's `needs` context."""
        return {"result": self.result, "outputs": dict(self.outputs)}


def stages(workflow: Workflow, event: str, only: Iterable[str] = ()) -> list[list[str]]:
    """The jobs to run for `event` in `needs` order, grouped in stages; `only` narrows
    to those jobs and what they need. PlanError on an unknown or circular need."""
    if not workflow.triggered_by(event):
        return []
    for job in workflow.jobs.values():
        for need in job.needs:
            if need not in workflow.jobs:
                raise PlanError(
                    f"unable to build dependency graph for {workflow.name} ({workflow.source})"
                )
    wanted = _closure(workflow, list(only)) if only else set(workflow.jobs)
    done: set[str] = set()
    ordered: list[list[str]] = []
    while len(done) < len(wanted):
        stage = [
            job_id
            for job_id in workflow.jobs
            if job_id in wanted
            and job_id not in done
            and all(n in done for n in workflow.jobs[job_id].needs)
        ]
        if not stage:
            raise PlanError(f"the jobs of {workflow.name} ({workflow.source}) need each other")
        ordered.append(stage)
        done.update(stage)
    return ordered


def _closure(workflow: Workflow, roots: list[str]) -> set[str]:
    found: set[str] = set()
    while roots:
        job_id = roots.pop()
        if job_id not in workflow.jobs:
            raise WorkflowInvalid(f"the workflow has no job {job_id!r}")
        if job_id not in found:
            found.add(job_id)
            roots.extend(workflow.jobs[job_id].needs)
    return found


def ancestors(workflow: Workflow, job_id: str) -> set[str]:
    """Every job `job_id` needs, directly or not."""
    return _closure(workflow, list(workflow.jobs[job_id].needs))


def status_of(results: Iterable[str]) -> str:
    """The status the job-level status functions see, from the results of every job a
    job needs (transitively, as GitHub and act do)."""
    seen = set(results)
    if CANCELLED in seen:
        return CANCELLED
    if FAILURE in seen:
        return FAILURE
    if SKIPPED in seen:
        return SKIPPED  # neither success() nor failure(); always() still runs
    return SUCCESS


def job_scope(base: Mapping[str, Any], needs: Mapping[str, JobResult], status: str) -> Scope:
    """The scope of job-level expressions (`if`, `strategy`, `runs-on`, call `with`)."""
    contexts = dict(base)
    contexts["needs"] = {name: result.as_need() for name, result in needs.items()}
    return Scope(contexts, status=status)


def should_run(job: Job, scope: Scope) -> bool:
    """A job's `if:` (implicitly `success()`)."""
    return evaluate_condition(job.if_, scope)


def combine(legs: Iterable[JobResult]) -> JobResult:
    """A matrix job's result: failure if a leg failed, cancelled if one was cancelled;
    outputs merged, later legs' non-empty values winning."""
    legs = list(legs)
    outputs: dict[str, str] = {}
    for leg in legs:
        outputs.update({k: val for k, val in leg.outputs.items() if val != ""})
    results = {leg.result for leg in legs}
    for result in (FAILURE, CANCELLED, SUCCESS):
        if result in results:
            return JobResult(result, outputs)
    return JobResult(SKIPPED, outputs)


def call_inputs(called: Workflow, job: Job, scope: Scope) -> dict[str, Any]:
    """The inputs a reusable-workflow call passes (`with:`, evaluated); WorkflowInvalid when
    the called workflow is not reusable."""
    spec = called.on.get("workflow_call", False)
    if spec is False:
        raise WorkflowInvalid(
            f"{called.source} is not a reusable workflow (no `on: workflow_call`)"
        )
    given = evaluate_tree(job.with_, scope)
    return dict(given) if isinstance(given, Mapping) else {}


def call_secrets(job: Job, secrets: Mapping[str, str], scope: Scope) -> dict[str, str]:
    """The secrets a called workflow gets: every one with `secrets: inherit`, else the
    mapped ones."""
    if job.secrets == "inherit":
        return dict(secrets)
    if not isinstance(job.secrets, Mapping):
        return {}
    return {str(k): evaluate_text(val, scope) for k, val in job.secrets.items()}


def call_outputs(
    called: Workflow, results: Mapping[str, JobResult], scope: Scope
) -> dict[str, str]:
    """A call's outputs: the called workflow's `on.workflow_call.outputs`, from `jobs`."""
    spec = called.on.get("workflow_call")
    declared = spec.get("outputs") if isinstance(spec, Mapping) else None
    if not isinstance(declared, Mapping):
        return {}
    jobs = {name: result.as_need() for name, result in results.items()}
    inner = scope.with_contexts(jobs=jobs)
    outputs: dict[str, str] = {}
    for name, item in declared.items():
        raw = item.get("value") if isinstance(item, Mapping) else item
        outputs[str(name)] = evaluate_text(raw, inner)
    return outputs


def ok(result: str, continue_on_error: bool = False) -> bool:
    """Whether a job's result lets the workflow succeed."""
    return result in (SUCCESS, SKIPPED) or continue_on_error


def runs_on_labels(value: Any) -> list[str]:
    """`runs-on` (a label, a list, or `{group, labels}`) as a list of labels."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list):
        return [v.to_string(item) for item in value if v.to_string(item)]
    if isinstance(value, Mapping):
        labels = runs_on_labels(value.get("labels"))
        group = value.get("group")
        return labels + ([f"group:{group}"] if group else [])
    return [v.to_string(value)]
