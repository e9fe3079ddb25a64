"""Running one workflow job (one matrix combination) on a runner: its contexts, `if`,
container, services, steps in order, outputs and step summary. A cancel kills the running
step, runs the steps whose `if` allows it (`always()`, `cancelled()`), then propagates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.sandbox import Limits
from executors.base import JobContext, StepReport
from executors.github import values as v
from executors.github.contexts import RunInfo, github_context, runner_context
from executors.github.errors import WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.masking import Masker
from executors.github.sandbox import JobSandbox, Service
from executors.github.state import (
    CANCELLED,
    FAILURE,
    SKIPPED,
    SUCCESS,
    Frame,
    RunState,
    StepResult,
)
from executors.github.steprun import StepRunner
from executors.github.templates import evaluate_condition, evaluate_text, evaluate_tree
from executors.github.workflow import Job, Workflow

log = structlog.get_logger("chaser.github")

DEFAULT_JOB_MINUTES = 360.0
CANCEL_GRACE = 300.0
SUMMARY_LIMIT = 1024 * 1024


@dataclass
class JobPlan:
    """Everything resolved before a job's container starts."""

    workflow: Workflow
    job: Job
    info: RunInfo
    runner_name: str
    image: str
    workspace: str
    run_env: dict[str, str]
    secrets: dict[str, str]
    vars: dict[str, str]
    inputs: dict[str, Any]
    needs: dict[str, Any]
    needs_status: str
    limits: Limits
    actions_dir: str | None = None
    tail_bytes: int = 16384


@dataclass
class LegOutcome:
    """How one combination of a job ended."""

    conclusion: str
    outcome: str
    matrix: dict[str, Any]
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepResult] = field(default_factory=list)
    summary: str = ""
    annotations: list[dict[str, str]] = field(default_factory=list)
    error: dict[str, str] | None = None
    image: str = ""
    timed_out: bool = False

    def report(self) -> dict[str, Any]:
        """The combination as the job's result shows it."""
        return {
            "conclusion": self.conclusion,
            "outcome": self.outcome,
            "matrix": self.matrix,
            "outputs": self.outputs,
            "steps": [step.report() for step in self.steps],
            "summary": self.summary,
            "annotations": self.annotations,
            "image": self.image,
        }


def base_contexts(
    plan: JobPlan, matrix: dict[str, Any], strategy: dict[str, Any]
) -> dict[str, Any]:
    """The contexts every expression of the job may read (before `env` and `steps`)."""
    github = github_context(plan.info, workflow=plan.workflow.name, job=plan.job.id)
    return {
        "github": github,
        "runner": runner_context(plan.runner_name),
        "vars": plan.vars,
        "secrets": {**plan.secrets, "GITHUB_TOKEN": plan.secrets.get("GITHUB_TOKEN", "")},
        "inputs": plan.inputs,
        "needs": plan.needs,
        "matrix": matrix,
        "strategy": strategy,
        "job": {"status": SUCCESS, "container": {"id": "", "network": ""}, "services": {}},
        "env": dict(plan.run_env),
        "steps": {},
    }


def job_env(plan: JobPlan, contexts: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The workflow's and the job's `env`, evaluated in turn."""
    scope = Scope(dict(contexts))
    workflow_env = _strings(evaluate_tree(plan.workflow.env or {}, scope), "workflow `env`")
    scope.contexts["env"] = {**plan.run_env, **workflow_env}
    own = _strings(evaluate_tree(plan.job.env or {}, scope), f"job {plan.job.id} `env`")
    return workflow_env, own


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise WorkflowInvalid(f"{what} must be a mapping")
    return {str(k): v.to_string(item) for k, item in value.items()}


def job_runs(plan: JobPlan, contexts: dict[str, Any]) -> bool:
    """The job-level `if:` over the status of the jobs it needs."""
    scope = Scope({k: val for k, val in contexts.items() if k not in ("steps", "job")})
    scope.status = plan.needs_status
    return evaluate_condition(plan.job.if_, scope)


def container_of(job: Job, scope: Scope, default_image: str) -> tuple[str, dict[str, str]]:
    """`jobs.<id>.container` (a string or `{image, env}`): the image and its env."""
    raw = evaluate_tree(job.container, scope) if job.container is not None else None
    if raw in (None, ""):
        return default_image, {}
    if isinstance(raw, str):
        return raw, {}
    if not isinstance(raw, Mapping):
        raise WorkflowInvalid(f"job {job.id}: `container` must be an image or a mapping")
    image = v.to_string(raw.get("image")) or default_image
    return image, _strings(raw.get("env"), f"job {job.id} `container.env`")


def services_of(job: Job, scope: Scope) -> tuple[list[Service], list[str]]:
    """The services to start, and the ids of those with an empty image (not started)."""
    started: list[Service] = []
    empty: list[str] = []
    for service_id, raw in job.services.items():
        value = evaluate_tree(raw, scope)
        image = (
            v.to_string(value.get("image")) if isinstance(value, Mapping) else v.to_string(value)
        )
        if not image:
            empty.append(service_id)
            continue
        env = (
            _strings(value.get("env"), f"service {service_id} `env`")
            if isinstance(value, Mapping)
            else {}
        )
        started.append(Service(id=service_id, image=image, env=env))
    return started, empty


class JobRun:
    """One combination of a job on its sandbox."""

    def __init__(self, ctx: JobContext, sandbox: JobSandbox, plan: JobPlan, masker: Masker) -> None:
        self.ctx = ctx
        self.sandbox = sandbox
        self.plan = plan
        self.masker = masker

    async def execute(
        self, matrix: dict[str, Any], strategy: dict[str, Any], prefix: str = ""
    ) -> LegOutcome:
        """Run the combination; the sandbox is removed afterwards whatever happens."""
        plan = self.plan
        contexts = base_contexts(plan, matrix, strategy)
        if not job_runs(plan, contexts):
            await self.ctx.log(
                "system", f"{prefix}job {plan.job.id} skipped: its `if` is false\n".encode()
            )
            return LegOutcome(SKIPPED, SKIPPED, matrix)
        workflow_env, own_env = job_env(plan, contexts)
        scope = Scope({**contexts, "env": {**plan.run_env, **workflow_env, **own_env}})
        image, container_env = container_of(plan.job, scope, plan.image)
        services, empty = services_of(plan.job, scope)
        minutes = (
            v.to_number(evaluate_tree(plan.job.timeout_minutes, scope))
            if plan.job.timeout_minutes is not None
            else DEFAULT_JOB_MINUTES
        )
        for service_id in empty:
            await self._note(f"service {service_id} is not started: its image is empty")
        try:
            placed = await self.sandbox.start(
                image=image,
                workspace=plan.workspace,
                limits=plan.limits,
                env=container_env,
                services=services,
                progress=self._progress,
            )
            contexts["job"] = {
                "status": SUCCESS,
                "container": {"id": placed.container, "network": placed.network},
                "services": {**placed.services, **{s: {} for s in empty}},
            }
            event = json.dumps(plan.info.event).encode()
            await self.sandbox.put_files("/github/workflow", {"event.json": event})
            state = RunState(
                ctx=self.ctx,
                sandbox=self.sandbox,
                masker=self.masker,
                contexts=contexts,
                layers=[plan.run_env, workflow_env, own_env],
                defaults={
                    **_run_defaults(plan.workflow.defaults),
                    **_run_defaults(plan.job.defaults),
                },
                deadline=time.monotonic() + max(minutes, 0.0) * 60,
                limits=plan.limits,
                actions_dir=plan.actions_dir,
                tail_bytes=plan.tail_bytes,
            )
            return await self._steps(state, matrix, image, prefix)
        finally:
            await asyncio.shield(self.sandbox.close())

    async def _steps(
        self, state: RunState, matrix: dict[str, Any], image: str, prefix: str
    ) -> LegOutcome:
        runner = StepRunner(state)
        frame = Frame()
        results: list[StepResult] = []
        cancelled = timed_out = False
        for step in self.plan.job.steps:
            state.contexts["job"]["status"] = frame.status
            try:
                result = await runner.run(step, frame)
            except asyncio.CancelledError:
                if cancelled:
                    raise
                cancelled = True
                _uncancel()
                frame.status = CANCELLED
                state.deadline = time.monotonic() + CANCEL_GRACE
                result = StepResult(step.index, step.id, step.display_name(), CANCELLED, CANCELLED)
                await self._note("the job was cancelled: running the steps that ask for it")
            if result.timed_out and state.remaining() <= 0 and not timed_out:
                timed_out = True
                frame.status = CANCELLED
                state.deadline = time.monotonic() + CANCEL_GRACE
                await self._note("##[error]the job ran past its timeout-minutes")
            results.append(result)
            await self._report(result, prefix)
        outcome = self._outcome(state, frame, matrix, results, image, timed_out)
        if cancelled:
            raise asyncio.CancelledError
        return outcome

    def _outcome(
        self,
        state: RunState,
        frame: Frame,
        matrix: dict[str, Any],
        results: list[StepResult],
        image: str,
        timed_out: bool,
    ) -> LegOutcome:
        status = FAILURE if timed_out else frame.status
        scope = state.scope(frame)
        outputs = {}
        for name, raw in self.plan.job.outputs.items():
            outputs[name] = self.masker.mask(evaluate_text(raw, scope))
        outcome = status if status in (SUCCESS, FAILURE, CANCELLED) else FAILURE
        keep_going = v.truthy(evaluate_tree(self.plan.job.continue_on_error, scope))
        conclusion = SUCCESS if outcome == FAILURE and keep_going else outcome
        summary = "\n".join(state.summary)[:SUMMARY_LIMIT]
        failing = next((r for r in results if r.conclusion == FAILURE), None)
        error = None
        if timed_out:
            error = {
                "code": "timed_out",
                "message": f"job {self.plan.job.id} ran past its timeout-minutes",
            }
        elif failing is not None:
            code = (failing.error or {}).get("code", "step_failed")
            error = {
                "code": code,
                "message": _failure_message(failing),
            }
        return LegOutcome(
            conclusion=conclusion,
            outcome=outcome,
            matrix=matrix,
            outputs=outputs,
            steps=results,
            summary=summary,
            annotations=state.annotations,
            error=error,
            image=image,
            timed_out=timed_out,
        )

    async def _report(self, result: StepResult, prefix: str) -> None:
        await self.ctx.step(
            StepReport(
                name=(prefix + result.name)[:256],
                status=result.status(),
                exit_code=result.exit_code,
                result={
                    "id": result.id,
                    "outcome": result.outcome,
                    "conclusion": result.conclusion,
                    "outputs": result.outputs,
                    **({"error": result.error} if result.error else {}),
                    **({"steps": [s.report() for s in result.steps]} if result.steps else {}),
                },
                duration_ms=result.duration_ms,
                output_tail=self.masker.mask(result.tail),
                output_bytes=result.output_bytes,
            )
        )

    async def _note(self, text: str) -> None:
        await self.ctx.log("system", (self.masker.mask(text) + "\n").encode())

    async def _progress(self, line: str) -> None:
        await self._note(line)


def _failure_message(step: StepResult) -> str:
    head = f"step {step.index + 1} ({step.name}) failed"
    if step.error:
        return f"{head}: {step.error['message']}"
    if step.exit_code is not None:
        return f"{head} with exit code {step.exit_code}"
    inner = next((s for s in step.steps if s.conclusion == FAILURE), None)
    return f"{head} at its step {inner.index + 1} ({inner.name})" if inner else head


def _run_defaults(defaults: Mapping[str, Any]) -> dict[str, Any]:
    run = defaults.get("run")
    return dict(run) if isinstance(run, Mapping) else {}


def _uncancel() -> None:
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()
