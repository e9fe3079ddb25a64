"""`system.echo`: returns its input; the canary for the engine without Docker or a browser."""

from __future__ import annotations

import asyncio

from executors.base import Failed, JobContext, Outcome, Succeeded
from schemas.common import JobError
from schemas.kinds import SystemEchoInput


class EchoExecutor:
    """Echoes `message` after `sleep_ms`; fails on purpose when asked."""

    family = "system"
    kinds = frozenset({"system.echo"})

    async def start(self) -> None:
        """Nothing to acquire."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def run(self, ctx: JobContext) -> Outcome:
        """Sleep (cancellably), then succeed or fail as the input says."""
        spec = ctx.input
        assert isinstance(spec, SystemEchoInput)
        if spec.sleep_ms:
            await asyncio.sleep(spec.sleep_ms / 1000)
        if spec.fail:
            error = JobError(code="echo_failed", message="failed on request (`fail: true`)")
            return Failed(error=error, retriable=spec.retriable, result={"message": spec.message})
        return Succeeded(result={"message": spec.message, "attempt": ctx.state.attempt})
