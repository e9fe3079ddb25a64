"""Running a job in a browser session that lives in another executor process.

A session's browser context exists in exactly one process (the one whose keeper opened it).
That process answers NATS requests on `chaser.sessionctl.<session_id>`: a job taken by any
other process is sent there, the owner runs it on the session's page and streams each step
and then the outcome back to the requester's inbox, which records them as the job's own
events. A cancel goes to `chaser.sessionctl.<session_id>.cancel`. No responder means the
owner is gone, and the session with it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import nats.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from executors.base import Failed, Outcome, StepReport, Succeeded
from executors.browser.errors import SessionLost, SessionNotFound, StepTimeout
from schemas.common import JobError
from schemas.state import JobState

log = structlog.get_logger("chaser.browser")

ACCEPT_TIMEOUT = 5.0
Runner = Callable[[str, JobState, "RemoteSink"], Awaitable[Outcome]]


def control_subject(session_id: str) -> str:
    """Where the owner of a session takes jobs for it."""
    return f"chaser.sessionctl.{session_id}"


class RemoteRun(msgspec.Struct, frozen=True, kw_only=True):
    """A job to run in a session, and where to send its steps and outcome."""

    job: JobState
    session_id: str
    events_to: str


class RemoteAccepted(msgspec.Struct, frozen=True, kw_only=True):
    """The owner's immediate answer: it runs the job, or why not."""

    ok: bool
    reason: str = ""


class RemoteStep(msgspec.Struct, frozen=True, kw_only=True, tag="step"):
    """One finished step."""

    report: StepReport


class RemoteDone(msgspec.Struct, frozen=True, kw_only=True, tag="done"):
    """The outcome."""

    ok: bool
    result: Any = None
    error: JobError | None = None
    retriable: bool = False


class RemoteCancel(msgspec.Struct, frozen=True, kw_only=True):
    """Stop the job."""

    job_id: str


_decode_run = msgspec.json.Decoder(RemoteRun).decode
_decode_accepted = msgspec.json.Decoder(RemoteAccepted).decode
_decode_event = msgspec.json.Decoder(RemoteStep | RemoteDone).decode
_decode_cancel = msgspec.json.Decoder(RemoteCancel).decode
_encode = msgspec.json.Encoder().encode


class RemoteSink:
    """Sends a running job's steps to its requester."""

    def __init__(self, nc: NATS, to: str) -> None:
        self._nc = nc
        self._to = to

    async def step(self, report: StepReport) -> None:
        """Publish one step."""
        await self._nc.publish(self._to, _encode(RemoteStep(report=report)))


class SessionControl:
    """The owner's side: serves the sessions that live in this process."""

    def __init__(self, nc: NATS, runner: Runner, owns: Callable[[str, str], bool]) -> None:
        self._nc = nc
        self._runner = runner
        self._owns = owns
        self._subs: dict[str, list[Any]] = {}
        self._running: dict[str, asyncio.Task[None]] = {}

    async def serve(self, session_id: str) -> None:
        """Start answering for a session."""
        subject = control_subject(session_id)
        self._subs[session_id] = [
            await self._nc.subscribe(subject, cb=self._on_run),
            await self._nc.subscribe(subject + ".cancel", cb=self._on_cancel),
        ]
        # Other processes may ask as soon as the session is recorded open: make sure the
        # server knows the subscriptions before that.
        await self._nc.flush()

    async def unserve(self, session_id: str) -> None:
        """Stop answering for a session."""
        for sub in self._subs.pop(session_id, []):
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def stop(self) -> None:
        """Stop answering for every session and stop their jobs."""
        for session_id in list(self._subs):
            await self.unserve(session_id)
        for task in self._running.values():
            task.cancel()

    async def _on_run(self, msg: Msg) -> None:
        try:
            run = _decode_run(msg.data)
        except msgspec.DecodeError:
            await msg.respond(_encode(RemoteAccepted(ok=False, reason="undecodable request")))
            return
        if not self._owns(run.job.account, run.session_id):
            reason = f"session {run.session_id} is not open here"
            await msg.respond(_encode(RemoteAccepted(ok=False, reason=reason)))
            return
        await msg.respond(_encode(RemoteAccepted(ok=True)))
        task = asyncio.create_task(self._run(run))
        self._running[run.job.id] = task
        task.add_done_callback(lambda _t: self._running.pop(run.job.id, None))

    async def _run(self, run: RemoteRun) -> None:
        done: RemoteDone
        try:
            outcome = await self._runner(
                run.session_id, run.job, RemoteSink(self._nc, run.events_to)
            )
        except asyncio.CancelledError:
            done = RemoteDone(ok=False, error=JobError(code="cancelled", message="cancelled"))
        else:
            if isinstance(outcome, Succeeded):
                done = RemoteDone(ok=True, result=outcome.result)
            else:
                done = RemoteDone(
                    ok=False,
                    result=outcome.result,
                    error=outcome.error,
                    retriable=outcome.retriable,
                )
        with contextlib.suppress(nats.errors.Error):
            await self._nc.publish(run.events_to, _encode(done))

    async def _on_cancel(self, msg: Msg) -> None:
        with contextlib.suppress(msgspec.DecodeError):
            task = self._running.get(_decode_cancel(msg.data).job_id)
            if task is not None:
                task.cancel()


async def run_remote(
    nc: NATS,
    session_id: str,
    job: JobState,
    record: Callable[[StepReport], Awaitable[None]],
    *,
    timeout: float,
) -> Outcome:
    """Have the session's owner run the job; record its steps here as they come."""
    inbox = nc.new_inbox()
    queue: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        queue.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=collect)
    subject = control_subject(session_id)
    try:
        await _ask(nc, subject, RemoteRun(job=job, session_id=session_id, events_to=inbox))
        try:
            async with asyncio.timeout(timeout):
                return await _follow(queue, record)
        except TimeoutError as exc:
            raise StepTimeout(
                f"the session's browser did not finish within {timeout:.0f} s"
            ) from exc
    except asyncio.CancelledError:
        with contextlib.suppress(nats.errors.Error):
            await nc.publish(subject + ".cancel", _encode(RemoteCancel(job_id=job.id)))
            await nc.flush(1)
        raise
    finally:
        with contextlib.suppress(nats.errors.Error):
            await sub.unsubscribe()


async def _ask(nc: NATS, subject: str, run: RemoteRun) -> None:
    try:
        reply = await nc.request(subject, _encode(run), timeout=ACCEPT_TIMEOUT)
    except nats.errors.NoRespondersError as exc:
        raise SessionLost(f"session {run.session_id}: its browser is gone") from exc
    except nats.errors.TimeoutError as exc:
        raise SessionNotFound(f"session {run.session_id}: its browser does not answer") from exc
    accepted = _decode_accepted(reply.data)
    if not accepted.ok:
        raise SessionNotFound(accepted.reason)


async def _follow(
    queue: asyncio.Queue[Msg], record: Callable[[StepReport], Awaitable[None]]
) -> Outcome:
    while True:
        msg = await queue.get()
        try:
            item = _decode_event(msg.data)
        except msgspec.DecodeError:
            log.warning("sessionctl_message_undecodable", size=len(msg.data))
            continue
        if isinstance(item, RemoteStep):
            await record(item.report)
            continue
        if item.ok:
            return Succeeded(result=item.result)
        error = item.error or JobError(code="browser_error", message="failed")
        return Failed(error=error, retriable=item.retriable, result=item.result)
