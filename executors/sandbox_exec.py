"""One command in a sandbox container: stream its output, bound its tails, enforce its timeout
inside Docker, and kill what it started when it is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping

import structlog

from executors.docker import DockerHost, ExecOutput, SandboxError
from executors.sandbox_spec import KILL_ALL, TIMED_OUT_EXIT, OutputTail

log = structlog.get_logger("chaser.sandbox")

Sink = Callable[[str, bytes], Awaitable[None]]

# Runs the command with a shell in its working directory (created when missing), then kills
# whatever it left running, as `docker run` would when its main process ends. `$1` is the
# command and `$2` the directory; `kill -9 -1` spares only the container's init (the keeper)
# and the caller.
RUN_AND_CLEAN = (
    'mkdir -p "$2" 2>/dev/null; cd "$2" || exit 126; '
    '/bin/sh -c "$1"; code=$?; kill -9 -1 2>/dev/null; exit $code'
)
# In a session, what a job starts may outlive it (a server the next job talks to).
RUN_AND_KEEP = 'mkdir -p "$2" 2>/dev/null; cd "$2" || exit 126; exec /bin/sh -c "$1"'
LOG_CHUNK = 64 * 1024
DRAIN_SECONDS = 2.0


def command_argv(command: str, workdir: str | None, *, keep_processes: bool) -> list[str]:
    """The exec argv that runs `command` in `workdir` (the container's own when None)."""
    script = RUN_AND_KEEP if keep_processes else RUN_AND_CLEAN
    return ["/bin/sh", "-c", script, "chaser", command, workdir or "."]


class CommandRun:
    """How one command ended, with bounded tails of what it wrote."""

    def __init__(self, tail_bytes: int) -> None:
        self.stdout = OutputTail(tail_bytes)
        self.stderr = OutputTail(tail_bytes)
        self.combined = OutputTail(tail_bytes)
        self.exit_code = -1
        self.timed_out = False
        self.duration_ms = 0

    @property
    def truncated(self) -> bool:
        """Whether either stream's tail lost bytes."""
        return self.stdout.truncated or self.stderr.truncated

    def add(self, channel: str, data: bytes) -> None:
        """Record output of a channel."""
        (self.stderr if channel == "stderr" else self.stdout).add(data)
        self.combined.add(data)


async def run_command(
    docker: DockerHost,
    container: str,
    argv: list[str],
    *,
    env: Mapping[str, str],
    stdin: bytes | None,
    timeout: float,
    tail_bytes: int,
    sink: Sink,
    workdir: str | None = None,
) -> CommandRun:
    """Run to the end, to the timeout (then kill inside the container: exit code 124), or to
    cancellation (kill, then re-raise)."""
    run = CommandRun(tail_bytes)
    began = time.monotonic()
    output = await docker.start_exec(container, argv, env=env, stdin=stdin, workdir=workdir)
    try:
        run.timed_out = await _pump(output, run, sink, timeout)
        if run.timed_out:
            await _kill(docker, container)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DRAIN_SECONDS):
                    await _copy(output, run, sink)
            run.exit_code = TIMED_OUT_EXIT
        else:
            run.exit_code = await output.exit_code()
    except asyncio.CancelledError:
        await asyncio.shield(_kill(docker, container))
        raise
    finally:
        run.duration_ms = int((time.monotonic() - began) * 1000)
        await output.close()
    return run


async def _pump(output: ExecOutput, run: CommandRun, sink: Sink, timeout: float) -> bool:
    """Copy output until it ends (False) or the timeout passes (True)."""
    try:
        async with asyncio.timeout(timeout):
            await _copy(output, run, sink)
    except TimeoutError:
        return True
    return False


async def _copy(output: ExecOutput, run: CommandRun, sink: Sink) -> None:
    async for channel, data in output.chunks():
        run.add(channel, data)
        for start in range(0, len(data), LOG_CHUNK):
            await sink(channel, data[start : start + LOG_CHUNK])


async def _kill(docker: DockerHost, container: str) -> None:
    """Kill every process in the container but its keeper."""
    try:
        await docker.exec_detached(container, KILL_ALL)
    except SandboxError as exc:
        log.warning("sandbox_kill_failed", container=container, error=str(exc))
