"""Workflows as data: jobs, steps and their raw (unevaluated) values, loaded from YAML and
checked against GitHub's syntax rules. Pure.

Values that may hold `${{ }}` are kept raw; the job runner evaluates them when their
contexts exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.github.errors import WorkflowInvalid
from executors.github.yamlload import load_yaml

JOB_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
REMOTE_USES = re.compile(r"^[^/@\s]+/[^/@\s]+(/[^@]*)?@[^@\s]+$")


@dataclass(frozen=True)
class Step:
    """One step of a job or of a composite action."""

    index: int
    id: str | None
    name: Any
    run: str | None
    uses: str | None
    shell: Any = None
    with_: dict[str, Any] = field(default_factory=dict)
    env: Any = None
    if_: Any = None
    working_directory: Any = None
    continue_on_error: Any = False
    timeout_minutes: Any = None

    def display_name(self) -> str:
        """A name for logs when the step's `name` is absent (before evaluation)."""
        if isinstance(self.name, str) and self.name:
            return self.name
        if self.run is not None:
            first = self.run.strip().splitlines()[0] if self.run.strip() else ""
            return f"Run {first}"[:200]
        return f"Run {self.uses}"


@dataclass(frozen=True)
class Job:
    """One job of a workflow."""

    id: str
    name: Any
    needs: tuple[str, ...]
    runs_on: Any
    if_: Any
    env: Any
    defaults: dict[str, Any]
    steps: tuple[Step, ...]
    outputs: dict[str, Any]
    strategy: Any
    container: Any
    services: dict[str, Any]
    timeout_minutes: Any
    continue_on_error: Any
    uses: str | None = None
    with_: dict[str, Any] = field(default_factory=dict)
    secrets: Any = None


@dataclass(frozen=True)
class Workflow:
    """A loaded workflow."""

    name: str
    source: str
    on: dict[str, Any]
    env: Any
    defaults: dict[str, Any]
    jobs: dict[str, Job]

    def triggered_by(self, event: str) -> bool:
        """Whether the workflow runs on `event`."""
        return event in self.on


def _on(raw: Any, source: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, str):
        return {raw: None}
    if isinstance(raw, list):
        return {str(item): None for item in raw}
    if isinstance(raw, Mapping):
        return {str(k): val for k, val in raw.items()}
    raise WorkflowInvalid(f"'{source}': `on` must be an event, a list or a mapping")


def _mapping(raw: Any, what: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise WorkflowInvalid(f"{what} must be a mapping")
    return {str(k): val for k, val in raw.items()}


def _step_problem(raw: Any, where: str, index: int) -> str | None:
    if not isinstance(raw, Mapping):
        return f"invalid Step {index}: missing run or uses key"
    has_run, has_uses = "run" in raw, "uses" in raw
    label = raw.get("name", raw.get("id", index))
    if has_run == has_uses:
        return f"Invalid run/uses syntax for {where} step:{label}"
    if has_uses:
        return uses_problem(raw.get("uses"))
    if not isinstance(raw.get("run"), str):
        return f"{where} step:{label}: `run` must be a string"
    return None


def uses_problem(uses: Any) -> str | None:
    """Why a `uses:` value is malformed, or None."""
    if not isinstance(uses, str) or not uses.strip():
        return (
            "Expected format {org}/{repo}[/path]@ref. Actual '' Input string was not in a"
            " correct format"
        )
    if uses.startswith(("./", "docker://")) or uses == ".":
        return None
    if not REMOTE_USES.match(uses):
        return (
            f"Expected format {{org}}/{{repo}}[/path]@ref. Actual '{uses}' Input string was"
            " not in a correct format"
        )
    return None


def parse_step(raw: Mapping[str, Any], index: int) -> Step:
    """A step from its (validated) YAML mapping."""
    return Step(
        index=index,
        id=str(raw["id"]) if raw.get("id") is not None else None,
        name=raw.get("name"),
        run=raw.get("run"),
        uses=raw.get("uses"),
        shell=raw.get("shell"),
        with_=_mapping(raw.get("with"), "`with`"),
        env=raw.get("env"),
        if_=raw.get("if"),
        working_directory=raw.get("working-directory"),
        continue_on_error=raw.get("continue-on-error", False),
        timeout_minutes=raw.get("timeout-minutes"),
    )


def parse_steps(raw: Any, where: str) -> tuple[Step, ...]:
    """Validated steps of a job (or composite action)."""
    if not isinstance(raw, list):
        raise WorkflowInvalid(f"{where}: `steps` must be a list")
    steps = []
    for index, item in enumerate(raw):
        problem = _step_problem(item, where, index)
        if problem is not None:
            raise WorkflowInvalid(problem)
        steps.append(parse_step(item, index))
    return tuple(steps)


def _needs(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list):
        return tuple(str(item) for item in raw)
    raise WorkflowInvalid("`needs` must be a job id or a list of them")


def parse_job(job_id: str, raw: Any, workflow_name: str) -> Job:
    """A job from its YAML mapping; WorkflowInvalid on a syntax error."""
    if not JOB_ID.match(job_id):
        raise WorkflowInvalid(
            f"workflow is not valid. '{workflow_name}': Job name '{job_id}' is invalid. Names"
            " must start with a letter or '_' and contain only alphanumeric characters, '-',"
            " or '_'"
        )
    if not isinstance(raw, Mapping):
        raise WorkflowInvalid(f"job '{job_id}' must be a mapping")
    uses = raw.get("uses")
    if uses is None and "runs-on" not in raw:
        raise WorkflowInvalid(f"job '{job_id}': `runs-on` is required")
    steps = () if uses is not None else parse_steps(raw.get("steps"), f"job:{job_id}")
    return Job(
        id=job_id,
        name=raw.get("name"),
        needs=_needs(raw.get("needs")),
        runs_on=raw.get("runs-on"),
        if_=raw.get("if"),
        env=raw.get("env"),
        defaults=_mapping(raw.get("defaults"), f"job '{job_id}' `defaults`"),
        steps=steps,
        outputs=_mapping(raw.get("outputs"), f"job '{job_id}' `outputs`"),
        strategy=raw.get("strategy"),
        container=raw.get("container"),
        services=_mapping(raw.get("services"), f"job '{job_id}' `services`"),
        timeout_minutes=raw.get("timeout-minutes"),
        continue_on_error=raw.get("continue-on-error", False),
        uses=uses,
        with_=_mapping(raw.get("with"), f"job '{job_id}' `with`"),
        secrets=raw.get("secrets"),
    )


def load_workflow(text: str, source: str = "workflow.yml") -> Workflow:
    """Load and check a workflow; WorkflowInvalid says what is wrong."""
    if not text.strip():
        raise WorkflowInvalid(f"unable to read workflow '{source}': file is empty: EOF")
    data = load_yaml(text, source)
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(f"unable to read workflow '{source}': not a mapping")
    name = str(data.get("name") or source)
    jobs_raw = data.get("jobs")
    if not isinstance(jobs_raw, Mapping) or not jobs_raw:
        raise WorkflowInvalid(f"workflow '{source}' has no jobs")
    jobs = {str(k): parse_job(str(k), val, name) for k, val in jobs_raw.items()}
    return Workflow(
        name=name,
        source=source,
        on=_on(data.get("on", data.get(True)), source),
        env=data.get("env"),
        defaults=_mapping(data.get("defaults"), "`defaults`"),
        jobs=jobs,
    )


def select_job(workflow: Workflow, job_id: str | None) -> Job:
    """The job an input names, or the only one; WorkflowInvalid otherwise."""
    if job_id is None:
        if len(workflow.jobs) != 1:
            ids = ", ".join(workflow.jobs)
            raise WorkflowInvalid(f"the workflow has several jobs ({ids}): name one with `job`")
        return next(iter(workflow.jobs.values()))
    job = workflow.jobs.get(job_id)
    if job is None:
        raise WorkflowInvalid(
            f"the workflow has no job {job_id!r} (it has {', '.join(workflow.jobs)})"
        )
    return job
