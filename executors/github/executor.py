"""The `github` executor family: serves `github.runner` jobs on the runners CHASER_RUNNERS
configures, and advertises them while it is up.

Admission (before a job starts, so it stays `queued` meanwhile): the workflow is loaded and
the job's `runs-on` labels computed; a local runner with every label and a free slot takes
it; if only busy runners here, or runners of other processes, have the labels, the job is
handed back to the queue for a moment; if no live runner anywhere has them it is held until
its `queue_timeout_ms` (default CHASER_GITHUB_QUEUE_TIMEOUT_SECONDS) has passed since it
was queued, then fails with `no_matching_runner` naming the labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
import structlog
from nats.js import JetStreamContext

from engine.errors import EngineError, NotFound
from engine.runners import RunnerBoard, runners_bucket
from engine.sandbox import limits_for
from engine.settings import Settings
from engine.vault import SecretVault
from executors.base import Failed, Hold, JobContext, Outcome, Refuse, Succeeded
from executors.docker import DockerHost, DockerUnavailable, ImageUnavailable, SandboxError
from executors.errors import BackendUnavailable
from executors.github.errors import WorkflowError
from executors.github.jobrun import JobPlan, JobRun, LegOutcome
from executors.github.masking import Masker
from executors.github.planner import JobResult, combine
from executors.github.resolve import Resolved, combination_index, resolve, strategy_context
from executors.github.runners import RunnerSpec, parse_runners, pick
from executors.github.sandbox import JobSandbox
from executors.sandbox_containers import Containers, this_owner
from executors.workspace_files import (
    FileMissing,
    FilesUnavailable,
    PathRefused,
    WorkspaceFiles,
    WorkspaceMissing,
)
from schemas.common import JobError
from schemas.kinds import GithubRunnerInput, validate_input
from schemas.runners import RunnerView
from schemas.state import JobState

log = structlog.get_logger("chaser.github")

BEAT_SECONDS = 5.0
BUSY_HOLD = 0.5
ELSEWHERE_HOLD = 1.0
UNMATCHED_HOLD = 2.0
RESERVATION_SECONDS = 60.0
HELD_SECONDS = 120.0


@dataclass
class _Reservation:
    runner: str
    at: float


class GithubExecutor:
    """Runs workflow jobs in Docker containers on configured runner label sets."""

    family = "github"
    kinds = frozenset({"github.runner"})

    def __init__(self, settings: Settings, docker: DockerHost | None = None) -> None:
        self._settings = settings
        self.runners: tuple[RunnerSpec, ...] = parse_runners(
            settings.runners, settings.default_image
        )
        self._docker = docker or DockerHost()
        self._owner = this_owner()
        self._files = WorkspaceFiles(self.runners[0].image, self._docker)
        self._running: dict[str, int] = {}
        self._reserved: dict[tuple[str, int], _Reservation] = {}
        self._resolved: dict[tuple[str, int], Resolved] = {}
        # Jobs held in the queue are offered again and again: keep their workflow a while.
        self._held: dict[tuple[str, int], tuple[Resolved, float]] = {}
        self._js: JetStreamContext | None = None
        self._replicas = 1
        self._board: RunnerBoard | None = None
        self._vault: SecretVault | None = None
        self._beat: asyncio.Task[None] | None = None
        self.executor_id = f"github@{self._owner.host}:{self._owner.pid}:{self._owner.instance}"

    def bind_jetstream(self, js: JetStreamContext, replicas: int = 1) -> None:
        """The JetStream context, for the runner board and the secret vault."""
        self._js = js
        self._replicas = replicas
        self._vault = SecretVault(
            js, replicas=replicas, max_age_days=self._settings.event_max_age_days
        )

    async def start(self) -> None:
        """Connect to Docker (BackendUnavailable without it), reap orphans, advertise."""
        try:
            await self._docker.connect()
        except DockerUnavailable as exc:
            raise BackendUnavailable(str(exc)) from exc
        self._files.connected()
        with contextlib.suppress(SandboxError):
            await Containers(self._docker, self._settings, self._owner).reap()
        if self._js is not None:
            self._board = RunnerBoard(await runners_bucket(self._js, self._replicas))
            self._beat = asyncio.create_task(self._announce_forever(), name="github-runners")
        log.info("github_runners_ready", runners=[r.name for r in self.runners])

    async def stop(self) -> None:
        """Stop advertising and disconnect."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._board is not None:
            await self._board.withdraw(self.views())
        await self._docker.close()

    # --- presence ------------------------------------------------------------------------

    def views(self) -> list[RunnerView]:
        """This executor's runners as `GET /v1/runners` shows them."""
        now = datetime.now(UTC)
        return [
            RunnerView(
                name=r.name,
                labels=list(r.labels),
                image=r.image,
                capacity=r.capacity,
                running=self._running.get(r.name, 0),
                status="busy" if self._running.get(r.name, 0) else "idle",
                executor_id=self.executor_id,
                seen_at=now,
            )
            for r in self.runners
        ]

    async def _announce(self) -> None:
        if self._board is not None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self._board.announce(self.views())

    async def _announce_forever(self) -> None:
        while True:
            await self._announce()
            self._expire_reservations()
            await asyncio.sleep(BEAT_SECONDS)

    def _expire_reservations(self) -> None:
        now = time.monotonic()
        for key, (_, at) in list(self._held.items()):
            if now - at > HELD_SECONDS:
                self._held.pop(key, None)
        for key, reservation in list(self._reserved.items()):
            if now - reservation.at > RESERVATION_SECONDS:
                self._reserved.pop(key, None)
                self._resolved.pop(key, None)
                self._running[reservation.runner] -= 1

    # --- admission -----------------------------------------------------------------------

    async def admit(self, state: JobState) -> Hold | Refuse | None:
        """Start here now (None), hold in the queue, or refuse (see the module docstring)."""
        key = (state.id, state.attempt)
        if key in self._reserved:
            return None
        try:
            resolved = await self._resolve(state)
        except WorkflowError as exc:
            return Refuse(error=JobError(code=exc.code, message=str(exc)))
        except (WorkspaceMissing, FileMissing, PathRefused) as exc:
            return Refuse(error=JobError(code="workflow_not_found", message=str(exc)))
        except (FilesUnavailable, SandboxError) as exc:
            return Hold(delay=UNMATCHED_HOLD, reason=str(exc))
        wanted = list(resolved.labels)
        runner = pick(self.runners, wanted, self._running)
        if runner is not None:
            self._running[runner.name] = self._running.get(runner.name, 0) + 1
            self._reserved[key] = _Reservation(runner.name, time.monotonic())
            self._resolved[key] = resolved
            self._held.pop(key, None)
            asyncio.get_running_loop().create_task(self._announce())
            return None
        if any(r.serves(wanted) for r in self.runners):
            return Hold(delay=BUSY_HOLD, reason="every matching runner here is busy")
        if await self._served_elsewhere(wanted):
            return Hold(delay=ELSEWHERE_HOLD, reason="a runner of another process matches")
        verdict = self._unmatched(state, wanted)
        if isinstance(verdict, Refuse):
            self._held.pop(key, None)
        return verdict

    async def _served_elsewhere(self, wanted: list[str]) -> bool:
        if self._board is None:
            return False
        try:
            live = await self._board.live()
        except (nats.errors.Error, nats.js.errors.Error):
            return False
        mine = self.executor_id
        return any(
            view.executor_id != mine
            and RunnerSpec(view.name, tuple(view.labels), view.image).serves(wanted)
            for view in live
        )

    def _unmatched(self, state: JobState, wanted: list[str]) -> Hold | Refuse:
        spec = state.input.get("queue_timeout_ms")
        timeout = (
            spec / 1000 if isinstance(spec, int) else self._settings.github_queue_timeout_seconds
        )
        queued = state.queued_at or state.created_at
        waited = (datetime.now(UTC) - queued).total_seconds()
        if waited < timeout:
            return Hold(delay=min(UNMATCHED_HOLD, max(timeout - waited, 0.05)), reason="no runner")
        served = "; ".join(f"{r.name}: {','.join(r.labels)}" for r in self.runners)
        message = (
            f"no runner has every label of runs-on {wanted} (waited {waited:.0f} s);"
            f" runners here: {served or 'none'}"
        )
        return Refuse(error=JobError(code="no_matching_runner", message=message))

    async def _resolve(self, state: JobState) -> Resolved:
        key = (state.id, state.attempt)
        if key in self._resolved:
            return self._resolved[key]
        held = self._held.get(key)
        if held is not None:
            return held[0]
        spec = validate_input(state.kind, state.input)
        assert isinstance(spec, GithubRunnerInput)
        if spec.workflow is not None:
            text, source = spec.workflow, "workflow.yml"
        else:
            assert spec.workflow_path is not None
            found = await self._files.read(state.account, spec.workspace, spec.workflow_path)
            if not isinstance(found, bytes):
                raise PathRefused("input.workflow_path", f"{spec.workflow_path} is a directory")
            text, source = found.decode("utf-8", "replace"), spec.workflow_path
        resolved = resolve(spec, text, source, state.id)
        self._held[key] = (resolved, time.monotonic())
        return resolved

    # --- running -------------------------------------------------------------------------

    async def run(self, ctx: JobContext) -> Outcome:
        """Run the job's combinations on the runner admission chose."""
        key = (ctx.job_id, ctx.state.attempt)
        reservation = self._reserved.pop(key, None)
        runner_name = reservation.runner if reservation else self.runners[0].name
        if reservation is None:
            self._running[runner_name] = self._running.get(runner_name, 0) + 1
        try:
            resolved = await self._resolve(ctx.state)
            return await self._run(ctx, resolved, runner_name)
        except WorkflowError as exc:
            return Failed(error=JobError(code=exc.code, message=str(exc)))
        except (WorkspaceMissing, FileMissing, PathRefused) as exc:
            return Failed(error=JobError(code="workflow_not_found", message=str(exc)))
        except ImageUnavailable as exc:
            return Failed(error=JobError(code="image_unavailable", message=str(exc)))
        except (SandboxError, FilesUnavailable) as exc:
            log.warning("github_job_failed", job_id=ctx.job_id, error=str(exc))
            return Failed(error=JobError(code="sandbox_error", message=str(exc)), retriable=True)
        except NotFound as exc:
            return Failed(error=JobError(code="secrets_expired", message=str(exc)))
        finally:
            self._resolved.pop(key, None)
            self._running[runner_name] -= 1
            asyncio.get_running_loop().create_task(self._announce())

    async def _secrets(self, ctx: JobContext, spec: GithubRunnerInput) -> dict[str, str]:
        found = dict(spec.secrets)
        if spec.secrets_ref is not None:
            if self._vault is None:
                raise NotFound("secrets", spec.secrets_ref)
            try:
                found.update(await self._vault.open(ctx.account, spec.secrets_ref))
            except EngineError as exc:
                if isinstance(exc, NotFound):
                    raise
                raise SandboxError(str(exc)) from exc
        return found

    async def _run(self, ctx: JobContext, resolved: Resolved, runner_name: str) -> Outcome:
        spec = ctx.input
        assert isinstance(spec, GithubRunnerInput)
        runner = next(r for r in self.runners if r.name == runner_name)
        secrets = await self._secrets(ctx, spec)
        masker = Masker(secrets.values())
        plan = JobPlan(
            workflow=resolved.workflow,
            job=resolved.job,
            info=resolved.info,
            runner_name=runner.name,
            image=runner.image,
            workspace=spec.workspace,
            run_env=dict(spec.env),
            secrets=secrets,
            vars=dict(spec.vars),
            inputs=resolved.inputs,
            needs=dict(spec.needs),
            needs_status=resolved.needs_status,
            limits=limits_for(self._settings, ephemeral=False),
            actions_dir=self._settings.actions_dir,
        )
        await ctx.log(
            "system",
            f"runner {runner.name} ({','.join(runner.labels)}) image {runner.image}\n".encode(),
        )
        legs: list[LegOutcome] = []
        several = len(resolved.combinations) > 1
        for number, combination in enumerate(resolved.combinations):
            index = combination_index(resolved, combination)
            sandbox = JobSandbox(
                self._docker,
                self._owner,
                account=ctx.account,
                job_id=ctx.job_id,
                attempt=ctx.state.attempt * 1000 + number if several else ctx.state.attempt,
            )
            prefix = f"[{_describe(combination)}] " if several else ""
            run = JobRun(ctx, sandbox, plan, masker)
            legs.append(await run.execute(combination, strategy_context(resolved, index), prefix))
        return outcome_of(resolved, runner, legs, masker)


def _describe(combination: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in combination.items())[:80]


def outcome_of(
    resolved: Resolved, runner: RunnerSpec, legs: list[LegOutcome], masker: Masker
) -> Outcome:
    """The job's result: the combination's (or every combination's) report."""
    head: dict[str, Any] = {
        "workflow": resolved.workflow.name,
        "job": resolved.job.id,
        "runner": {"name": runner.name, "labels": list(runner.labels), "image": runner.image},
        "labels": list(resolved.labels),
    }
    if len(legs) == 1:
        leg = legs[0]
        result = {**head, **leg.report()}
        outcome, error = leg.outcome, leg.error
    else:
        merged = combine(JobResult(leg.outcome, leg.outputs) for leg in legs)
        conclusions = combine(JobResult(leg.conclusion, {}) for leg in legs).result
        result = {
            **head,
            "conclusion": conclusions,
            "outcome": merged.result,
            "outputs": merged.outputs,
            "legs": [leg.report() for leg in legs],
        }
        outcome = merged.result
        error = next((leg.error for leg in legs if leg.error is not None), None)
    result = masker.mask_tree(result)
    if outcome in ("success", "skipped"):
        return Succeeded(result=result)
    job_error = JobError(
        code=(error or {}).get("code", "step_failed"),
        message=masker.mask((error or {}).get("message", f"job {resolved.job.id} failed")),
    )
    return Failed(error=job_error, result=result, exit_code=_exit_code(legs))


def _exit_code(legs: list[LegOutcome]) -> int | None:
    for leg in legs:
        for step in leg.steps:
            if step.conclusion == "failure":
                return step.exit_code
    return None
