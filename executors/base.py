"""The executor port: what a backend implements, and what it is given to run one attempt."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import msgspec

from schemas.common import JobError, StepStatus
from schemas.kinds import Input
from schemas.sessions import SessionState
from schemas.state import JobState

if TYPE_CHECKING:
    from engine.aggregates import SessionService


class Succeeded(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt did what it was asked."""

    result: Any = None


class Failed(msgspec.Struct, frozen=True, kw_only=True):
    """The attempt failed; `retriable` marks failures of the infrastructure, not the job."""

    error: JobError
    retriable: bool = False
    result: Any = None
    exit_code: int | None = None


Outcome = Succeeded | Failed


class Hold(msgspec.Struct, frozen=True, kw_only=True):
    """Not here, not now: the job stays queued and is offered again after `delay` seconds."""

    delay: float
    reason: str = ""


class Refuse(msgspec.Struct, frozen=True, kw_only=True):
    """The job can never start: it fails from the queue with `error`."""

    error: JobError


class StepReport(msgspec.Struct, frozen=True, kw_only=True):
    """One finished step, as an executor reports it."""

    name: str
    status: StepStatus
    exit_code: int | None = None
    result: Any = None
    duration_ms: int = 0
    output_tail: str = ""
    output_bytes: int = 0


class JobContext:
    """Everything one attempt may use: its job, validated input, steps, logs, cancellation."""

    def __init__(
        self,
        state: JobState,
        input: Input,
        *,
        record_step: Callable[[StepReport], Awaitable[None]],
        write_log: Callable[[str, bytes], Awaitable[None]],
        sessions: SessionService | None = None,
        executor_id: str = "",
    ) -> None:
        self.state = state
        self.input = input
        self.sessions = sessions
        self.executor_id = executor_id
        self.cancelled = asyncio.Event()
        self._record_step = record_step
        self._write_log = write_log
        self._steps = 0

    @property
    def account(self) -> str:
        """The job's account."""
        return self.state.account

    @property
    def job_id(self) -> str:
        """The job's id."""
        return self.state.id

    async def step(self, report: StepReport) -> None:
        """Append a StepFinished event for the next step index."""
        self._steps += 1
        await self._record_step(report)

    async def log(self, channel: str, data: bytes) -> None:
        """Write raw output (`stdout`, `stderr`, `system`) to the job's log stream."""
        await self._write_log(channel, data)


class Executor(Protocol):
    """A backend that runs attempts of the kinds of one family."""

    family: str
    kinds: frozenset[str]

    async def start(self) -> None:
        """Acquire long-lived resources (daemon connections, browsers)."""

    async def stop(self) -> None:
        """Release them."""

    async def run(self, ctx: JobContext) -> Outcome:
        """Run one attempt; cancellation arrives as asyncio.CancelledError."""


@runtime_checkable
class Admitting(Protocol):
    """An executor that screens work before it starts it (runner labels, capacity)."""

    async def admit(self, state: JobState) -> Hold | Refuse | None:
        """None to start the job here now; Hold to leave it queued; Refuse to fail it."""


@runtime_checkable
class SessionHost(Protocol):
    """An executor that also keeps live sessions (a running container, a browser context)."""

    async def open_session(self, state: SessionState) -> dict[str, Any]:
        """Start the session's resource; return what identifies it (stored in SessionStarted)."""

    async def close_session(self, state: SessionState) -> None:
        """Stop the session's resource; must tolerate one already gone."""
