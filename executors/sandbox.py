"""`sandbox.exec` and `pipeline.run` on Docker, and live sandbox sessions.

A job runs where its input places it: in a live session's container (`session_id`, or a
workspace that has a live session), in this executor's warm container on the workspace, or in
a fresh ephemeral container. Its output streams to the job's log; its result keeps bounded
tails. The dispatcher runs jobs of one workspace one at a time; a lock here keeps that true
within this process whatever happens to leases.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import structlog

from engine.aggregates import SessionService
from engine.errors import InvalidInput
from engine.sandbox import Limits, limit_problems, limits_for
from engine.settings import Settings
from executors.base import Failed, JobContext, Outcome, Succeeded
from executors.docker import DockerHost, DockerUnavailable, ImageUnavailable, SandboxError
from executors.errors import BackendUnavailable, JobProblem
from executors.sandbox_containers import Box, Containers, Progress, this_owner
from executors.sandbox_exec import CommandRun, command_argv, run_command
from executors.sandbox_pipeline import pipeline_outcome, run_steps
from executors.sandbox_sessions import (
    SessionGone,
    live_session,
    record_workspace,
    rival_session,
    session_limits,
    use_session,
)
from executors.sandbox_spec import ContainerSpec, exec_workdir, normalize_image, volume_name
from schemas.common import JobError
from schemas.kinds import PipelineRunInput, SandboxExecInput
from schemas.sessions import SESSION_ENDED, SessionState

log = structlog.get_logger("chaser.sandbox")


@dataclass
class Placement:
    """Where one job's commands run."""

    container: str
    name: str
    image: str
    workspace: str | None = None
    session_id: str | None = None
    box: Box | None = None
    ephemeral: bool = False

    def describe(self) -> dict[str, Any]:
        """The placement as the job's result reports it."""
        return {
            "workspace": self.workspace,
            "session_id": self.session_id,
            "image": self.image,
            "container": self.name,
        }


class SandboxExecutor:
    """Runs sandbox commands and pipelines in Docker containers, and hosts sandbox sessions."""

    family = "sandbox"
    kinds = frozenset({"sandbox.exec", "pipeline.run"})

    def __init__(self, settings: Settings, docker: DockerHost | None = None) -> None:
        self._settings = settings
        self._docker = docker or DockerHost()
        self._containers = Containers(self._docker, settings, this_owner())
        self._sessions: SessionService | None = None
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    def bind_sessions(self, sessions: SessionService) -> None:
        """The session service, to record workspaces and use sessions."""
        self._sessions = sessions

    async def start(self) -> None:
        """Connect to Docker (BackendUnavailable when it does not answer) and reap orphans."""
        try:
            version = await self._docker.connect()
        except DockerUnavailable as exc:
            raise BackendUnavailable(str(exc)) from exc
        prewarm = ContainerSpec.of(
            self._settings.default_image, limits_for(self._settings, ephemeral=True)
        )
        await self._containers.start(self._session_live, prewarm)
        owner = self._containers.owner
        log.info("sandbox_ready", docker=version.get("Version"), instance=owner.instance)

    async def stop(self) -> None:
        """Remove this executor's containers (sessions stay up) and disconnect."""
        await self._containers.stop()
        await self._docker.close()

    async def run(self, ctx: JobContext) -> Outcome:
        """Run one attempt; failures of the job become Failed with a stable code."""
        try:
            match ctx.input:
                case SandboxExecInput():
                    return await self._exec(ctx, ctx.input)
                case PipelineRunInput():
                    return await self._pipeline(ctx, ctx.input)
                case _:
                    raise JobProblem("unsupported_kind", ctx.state.kind)
        except JobProblem as exc:
            return Failed(
                error=JobError(code=exc.code, message=exc.message), retriable=exc.retriable
            )
        except InvalidInput as exc:
            return Failed(error=JobError(code="invalid_input", message=str(exc)))
        except ImageUnavailable as exc:
            error = JobError(code="image_unavailable", message=str(exc))
            return Failed(error=error, result={"image": exc.image})
        except SandboxError as exc:
            log.warning("sandbox_failed", job_id=ctx.job_id, error=str(exc))
            return Failed(error=JobError(code="sandbox_error", message=str(exc)), retriable=True)

    async def _exec(self, ctx: JobContext, spec: SandboxExecInput) -> Outcome:
        self._check_limits(spec)
        limits = limits_for(
            self._settings,
            ephemeral=spec.ephemeral,
            cpu=spec.cpu,
            memory_mb=spec.memory_mb,
            pids=spec.pids,
            network=spec.network,
        )
        async with self._placed(ctx, spec.workspace, spec.session_id, spec.image, limits) as place:
            run = await self._command(
                ctx,
                place,
                spec.command,
                env=spec.env,
                workdir=spec.workdir,
                stdin=spec.stdin.encode() if spec.stdin is not None else None,
                timeout_ms=spec.timeout_ms,
            )
        return exec_outcome(run, place)

    async def _pipeline(self, ctx: JobContext, spec: PipelineRunInput) -> Outcome:
        limits = limits_for(self._settings, ephemeral=False)
        async with self._placed(ctx, spec.workspace, spec.session_id, spec.image, limits) as place:

            async def step(command: str, env: dict[str, str], timeout_ms: int | None) -> CommandRun:
                return await self._command(
                    ctx, place, command, env=env, workdir=None, stdin=None, timeout_ms=timeout_ms
                )

            records = await run_steps(ctx, spec, step)
        return pipeline_outcome(records, place.describe())

    def _check_limits(self, spec: SandboxExecInput) -> None:
        problems = limit_problems(
            self._settings, cpu=spec.cpu, memory_mb=spec.memory_mb, pids=spec.pids
        )
        if problems:
            raise problems[0]

    async def _command(
        self,
        ctx: JobContext,
        place: Placement,
        command: str,
        *,
        env: dict[str, str],
        workdir: str | None,
        stdin: bytes | None,
        timeout_ms: int | None,
    ) -> CommandRun:
        in_workspace = place.workspace is not None
        argv = command_argv(
            command,
            exec_workdir(workdir, workspace=in_workspace),
            keep_processes=place.session_id is not None,
        )
        timeout = timeout_ms / 1000 if timeout_ms else self._settings.sandbox_timeout_seconds
        return await run_command(
            self._docker,
            place.container,
            argv,
            env=env,
            stdin=stdin,
            timeout=timeout,
            tail_bytes=self._settings.sandbox_output_tail_bytes,
            sink=ctx.log,
        )

    @contextlib.asynccontextmanager
    async def _placed(
        self,
        ctx: JobContext,
        workspace: str | None,
        session_id: str | None,
        image: str | None,
        limits: Limits,
    ) -> AsyncIterator[Placement]:
        """Find (or make) the container, hold its workspace, give it back afterwards."""
        shared = session_id or workspace
        lock = self._locks.setdefault((ctx.account, shared), asyncio.Lock()) if shared else None
        async with lock or contextlib.nullcontext():
            place = await self._place(ctx, workspace, session_id, image, limits)
            if place.box is not None:
                place.box.busy += 1
            try:
                yield place
            finally:
                self._release(place)

    async def _place(
        self,
        ctx: JobContext,
        workspace: str | None,
        session_id: str | None,
        image: str | None,
        limits: Limits,
    ) -> Placement:
        """A job's container: its session's, its workspace's (or the workspace's live
        session's), or a fresh ephemeral one."""
        sessions = self._sessions
        if session_id is not None:
            return await self._in_session(ctx, session_id, workspace, image)
        if workspace is not None and sessions is not None:
            # The workspace's live session, if it has one, is where its jobs run; one that
            # ends before it could be used leaves the job to this executor's container.
            live = live_session(sessions.read_model, ctx.account, workspace)
            with contextlib.suppress(SessionGone):
                if live is not None:
                    return await self._in_session(ctx, live.id, workspace, image)
        progress = _progress(ctx)
        chosen = image or self._settings.default_image
        if workspace is None:
            spec = ContainerSpec.of(chosen, limits)
            box = await self._containers.ephemeral_box(
                ctx.account, ctx.job_id, ctx.state.attempt, spec, progress
            )
            return Placement(box.id, box.name, spec.image, box=box, ephemeral=True)
        spec = ContainerSpec.of(chosen, limits, volume_name(ctx.account, workspace))
        box = await self._containers.workspace_box(ctx.account, workspace, spec, progress)
        if sessions is not None:
            await record_workspace(
                sessions, ctx.account, workspace, actor=ctx.executor_id, job_id=ctx.job_id
            )
        return Placement(box.id, box.name, spec.image, workspace=workspace, box=box)

    async def _in_session(
        self, ctx: JobContext, session_id: str, workspace: str | None, image: str | None
    ) -> Placement:
        if self._sessions is None:
            raise SessionGone(session_id, "cannot be used: no session service here")
        state = await use_session(
            self._sessions, ctx.account, session_id, job_id=ctx.job_id, actor=ctx.executor_id
        )
        if workspace is not None and state.workspace != workspace:
            message = f"session {session_id} is not on workspace {workspace}"
            raise JobProblem("session_mismatch", message)
        if image is not None and state.image and normalize_image(image) != state.image:
            message = f"session {session_id} runs {state.image}, not {image}"
            raise JobProblem("session_mismatch", message)
        container = str(state.resource.get("container_id", ""))
        name = str(state.resource.get("container", container))
        image_used = str(state.resource.get("image", state.image or ""))
        return Placement(container, name, image_used, state.workspace, session_id)

    def _release(self, place: Placement) -> None:
        box = place.box
        if box is None:
            return
        box.busy -= 1
        if place.ephemeral:
            self._containers.discard(box)

    def _session_live(self, account: str, session_id: str) -> bool | None:
        if self._sessions is None:
            return None
        state = self._sessions.read_model.session(account, session_id)
        if state is None:
            return None
        return state.status not in SESSION_ENDED

    async def open_session(self, state: SessionState) -> dict[str, Any]:
        """Start a session's container on its workspace (or image); what identifies it."""
        if state.type != "sandbox":
            raise JobProblem("invalid_input", f"a {state.type} session is not a sandbox")
        if self._sessions is not None:
            rival = rival_session(self._sessions.read_model, state)
            if rival is not None:
                message = f"workspace {state.workspace} already has live session {rival.id}"
                raise JobProblem("workspace_busy", message)
        limits = session_limits(self._settings, state)
        volume = volume_name(state.account, state.workspace) if state.workspace else None
        spec = ContainerSpec.of(state.image or self._settings.default_image, limits, volume)
        container, name = await self._containers.session_container(
            state.account, state.id, state.workspace, spec
        )
        if state.workspace is not None and self._sessions is not None:
            await record_workspace(
                self._sessions, state.account, state.workspace, actor="sandbox", job_id=None
            )
        log.info("sandbox_session_container", session_id=state.id, container=name)
        return {"container_id": container, "container": name, "image": spec.image}

    async def close_session(self, state: SessionState) -> None:
        """Remove a session's container; one already gone is fine."""
        container = state.resource.get("container_id") or f"chaser-ses.{state.account}.{state.id}"
        try:
            await self._docker.remove(str(container))
        except SandboxError as exc:
            # The reaper removes containers of ended sessions once Docker answers again.
            log.warning("sandbox_session_close_failed", session_id=state.id, error=str(exc))


def exec_outcome(run: CommandRun, place: Placement) -> Outcome:
    """A `sandbox.exec` result: success on exit 0, else a failure carrying the exit code."""
    result = {
        "exit_code": run.exit_code,
        "stdout": run.stdout.text(),
        "stderr": run.stderr.text(),
        "output_truncated": run.truncated,
        "stdout_bytes": run.stdout.total,
        "stderr_bytes": run.stderr.total,
        "timed_out": run.timed_out,
        "duration_ms": run.duration_ms,
        **place.describe(),
    }
    if run.timed_out:
        message = f"the command ran past its timeout after {run.duration_ms} ms and was killed"
        error = JobError(code="timed_out", message=message)
        return Failed(error=error, retriable=True, result=result, exit_code=run.exit_code)
    if run.exit_code != 0:
        error = JobError(code="command_failed", message=f"the command exited with {run.exit_code}")
        return Failed(error=error, result=result, exit_code=run.exit_code)
    return Succeeded(result=result)


def _progress(ctx: JobContext) -> Progress:
    async def progress(line: str) -> None:
        await ctx.log("system", (line + "\n").encode())

    return progress
