"""`pipeline.run`: steps in order in one container, one StepFinished each; the first failing
step fails the job and the rest are recorded skipped, unless it says `continue_on_error`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from executors.base import Failed, JobContext, Outcome, StepReport, Succeeded
from executors.sandbox_exec import CommandRun
from schemas.common import JobError, StepStatus
from schemas.kinds import PipelineRunInput, PipelineStep

RunStep = Callable[[str, dict[str, str], int | None], Awaitable[CommandRun]]
NAME_LENGTH = 256


class StepOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """One step as the pipeline's result reports it."""

    index: int
    name: str
    status: StepStatus
    exit_code: int | None = None
    duration_ms: int = 0
    continue_on_error: bool = False
    output_truncated: bool = False


def step_name(step: PipelineStep, index: int) -> str:
    """A step's name: the one it was given, else its command."""
    return (step.name or step.command or f"step {index + 1}")[:NAME_LENGTH]


def step_status(run: CommandRun) -> StepStatus:
    """How a command ended, as a step status."""
    if run.timed_out:
        return StepStatus.TIMED_OUT
    return StepStatus.SUCCEEDED if run.exit_code == 0 else StepStatus.FAILED


async def run_steps(
    ctx: JobContext, spec: PipelineRunInput, run_step: RunStep
) -> list[StepOutcome]:
    """Run every step (skipping those after a failure) and report each as it ends."""
    outcomes: list[StepOutcome] = []
    stopped = False
    for index, step in enumerate(spec.steps):
        name = step_name(step, index)
        if stopped:
            outcome = StepOutcome(index=index, name=name, status=StepStatus.SKIPPED)
            await ctx.step(StepReport(name=name, status=StepStatus.SKIPPED))
            outcomes.append(outcome)
            continue
        header = f"==> step {index + 1}/{len(spec.steps)}: {name}\n"
        await ctx.log("system", header.encode())
        run = await run_step(step.command, {**spec.env, **step.env}, step.timeout_ms)
        outcome = StepOutcome(
            index=index,
            name=name,
            status=step_status(run),
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
            continue_on_error=step.continue_on_error,
            output_truncated=run.truncated,
        )
        await ctx.step(
            StepReport(
                name=name,
                status=outcome.status,
                exit_code=run.exit_code,
                duration_ms=run.duration_ms,
                output_tail=run.combined.text(),
                output_bytes=run.combined.total,
                result={"timed_out": run.timed_out, "continue_on_error": step.continue_on_error},
            )
        )
        outcomes.append(outcome)
        stopped = outcome.status is not StepStatus.SUCCEEDED and not step.continue_on_error
    return outcomes


def pipeline_outcome(outcomes: list[StepOutcome], placement: dict[str, Any]) -> Outcome:
    """The job's outcome: failed at the first failing step that did not continue on error."""
    failing = next(
        (
            o
            for o in outcomes
            if o.status in (StepStatus.FAILED, StepStatus.TIMED_OUT) and not o.continue_on_error
        ),
        None,
    )
    ran = [o for o in outcomes if o.status is not StepStatus.SKIPPED]
    result = {
        **placement,
        "steps": msgspec.to_builtins(outcomes),
        "failed_step": failing.index if failing else None,
        "exit_code": (failing or ran[-1]).exit_code if ran else None,
        "timed_out": failing is not None and failing.status is StepStatus.TIMED_OUT,
        "duration_ms": sum(o.duration_ms for o in outcomes),
        "output_truncated": any(o.output_truncated for o in outcomes),
    }
    if failing is None:
        return Succeeded(result=result)
    how = "ran past its timeout" if failing.status is StepStatus.TIMED_OUT else "failed"
    message = f"step {failing.index + 1} ({failing.name}) {how} with exit code {failing.exit_code}"
    code = "timed_out" if failing.status is StepStatus.TIMED_OUT else "step_failed"
    error = JobError(code=code, message=message)
    return Failed(error=error, result=result, exit_code=failing.exit_code)
