"""The executor shell: take a lease from CHASER_WORK, start, run, record the outcome, ack.

The sequence for one work item: decode → take the job (append JobStarted with the expected
sequence) → run with heartbeats and a cancellation watch → append the terminal event → ack.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import cast

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.kv import KeyValue

from engine import decide
from engine.aggregates import SessionService
from engine.appending import append_decided
from engine.errors import ConcurrencyConflict, EngineError, InvalidTransition
from engine.fold import evolve, record
from engine.registry import Presence, beat, leave
from engine.service import JobService
from engine.subjects import (
    WORK_STREAM,
    job_subject,
    log_subject,
    partition_of,
    work_filters,
)
from executors.base import (
    Admitting,
    Executor,
    Failed,
    Hold,
    JobContext,
    Outcome,
    SessionHost,
    StepReport,
    Succeeded,
)
from executors.sessions import SessionKeeper
from schemas.common import TERMINAL, JobError, JobStatus
from schemas.events import AnyJobEvent
from schemas.kinds import validate_input
from schemas.state import JobState
from schemas.work import WorkItem

log = structlog.get_logger("chaser.executor")

_decode_item = msgspec.json.Decoder(WorkItem).decode
FETCH_WAIT = 1.0


def executor_id(family: str) -> str:
    """A name for this pool that tells an operator where it runs."""
    return f"{family}@{socket.gethostname()}:{os.getpid()}:{os.urandom(2).hex()}"


class _Attempt:
    """The state one running attempt carries between its appends."""

    def __init__(self, state: JobState, msg: Msg) -> None:
        self.state = state
        self.msg = msg
        self.task: asyncio.Task[Outcome] | None = None
        self.cancelled_by_user = False


class ExecutorPool:
    """A durable pull consumer of one family's work subjects, running up to `concurrency`."""

    def __init__(
        self,
        nc: NATS,
        js: JetStreamContext,
        service: JobService,
        executor: Executor,
        *,
        concurrency: int,
        lease_seconds: float,
        presence: KeyValue | None = None,
        sessions: SessionService | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._service = service
        self._executor = executor
        self._concurrency = concurrency
        self._lease = lease_seconds
        self._presence_kv = presence
        self._sessions = sessions
        self.keeper: SessionKeeper | None = None
        self.id = executor_id(executor.family)
        self._active: dict[str, _Attempt] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._beat_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def family(self) -> str:
        """The executor family this pool serves."""
        return self._executor.family

    def _presence(self) -> Presence:
        return Presence(
            executor_id=self.id,
            family=self.family,
            kinds=sorted(self._executor.kinds),
            concurrency=self._concurrency,
            active=len(self._active),
            seen_at=datetime.now(UTC),
        )

    async def start(self) -> None:
        """Start the backend, the consumer and the presence heartbeat."""
        await self._executor.start()
        config = ConsumerConfig(
            durable_name=f"chaser-{self.family}",
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._lease,
            max_deliver=-1,
            max_ack_pending=-1,
            filter_subjects=work_filters(self._executor.kinds),
        )
        sub = await self._js.pull_subscribe(
            "",
            durable=f"chaser-{self.family}",
            stream=WORK_STREAM,
            config=config,
        )
        self._loop_task = asyncio.create_task(self._fetch_loop(sub), name=f"fetch-{self.family}")
        if self._presence_kv is not None:
            self._beat_task = asyncio.create_task(self._beat(), name=f"presence-{self.family}")
        if isinstance(self._executor, SessionHost) and self._sessions is not None:
            self.keeper = SessionKeeper(
                self._nc,
                self._js,
                self._sessions,
                self._executor,
                family=self.family,
                executor_id=self.id,
            )
            await self.keeper.start()
        log.info("executor_started", executor_id=self.id, family=self.family)

    async def _beat(self) -> None:
        assert self._presence_kv is not None
        while True:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await beat(self._presence_kv, self._presence())
            await asyncio.sleep(5.0)

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping.is_set():
            await self._slots.acquire()
            free = 1
            while free < 64 and not self._slots.locked():
                await self._slots.acquire()
                free += 1
            try:
                msgs = await sub.fetch(free, timeout=FETCH_WAIT)
            except (TimeoutError, nats.errors.TimeoutError):
                msgs = []
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("executor_fetch_failed", family=self.family, error=repr(exc))
                msgs = []
                await asyncio.sleep(0.5)
            for msg in msgs:
                task = asyncio.create_task(self._handle(msg))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            for _ in range(free - len(msgs)):
                self._slots.release()

    async def _handle(self, msg: Msg) -> None:
        try:
            item = _decode_item(msg.data)
        except msgspec.DecodeError:
            log.error("work_item_undecodable", subject=msg.subject)
            await msg.term()
            self._slots.release()
            return
        try:
            await self._take_and_run(item.state, msg)
        except EngineError as exc:
            # The store is unavailable: leave the lease to lapse so the work is redelivered.
            log.warning("executor_store_error", job_id=item.state.id, error=str(exc))
        except Exception:
            log.exception("executor_crashed_on_job", job_id=item.state.id)
            with contextlib.suppress(nats.errors.Error):
                await msg.nak(delay=1.0)
        finally:
            self._slots.release()

    async def _take_and_run(self, state: JobState, msg: Msg) -> None:
        bound = log.bind(account=state.account, job_id=state.id, attempt=state.attempt)
        partition = partition_of(state.account, self._service.store.partitions)
        attempt = _Attempt(state, msg)

        async def on_cancel(_msg: Msg) -> None:
            attempt.cancelled_by_user = True
            if attempt.task is not None:
                attempt.task.cancel()

        cancel_sub = await self._nc.subscribe(
            job_subject(partition, state.account, state.id, "JobCancelled"), cb=on_cancel
        )
        try:
            if not await self._admitted(attempt):
                return
            started = await self._take(attempt, msg.metadata.num_delivered > 1)
            if started is None:
                await msg.ack()
                return
            attempt.state = started
            bound.info("job_started", seq=started.seq, executor_id=self.id)
            outcome = await self._run(attempt)
            if outcome is not None:
                await self._finish(attempt, outcome)
                bound.info("job_finished", outcome=type(outcome).__name__.lower())
            else:
                bound.info("job_cancelled_while_running")
            await msg.ack()
        finally:
            self._active.pop(state.id, None)
            with contextlib.suppress(nats.errors.Error):
                await cancel_sub.unsubscribe()

    async def _admitted(self, attempt: _Attempt) -> bool:
        """Ask an executor that screens its work whether to start the job now: on Hold the
        work goes back to the queue for later, on Refuse the job fails without starting."""
        if not isinstance(self._executor, Admitting):
            return True
        current = self._service.read_model.get(attempt.state.account, attempt.state.id)
        if current is not None and current.seq > attempt.state.seq:
            if current.status in TERMINAL or current.attempt != attempt.state.attempt:
                await attempt.msg.ack()  # cancelled or moved on meanwhile
                return False
            if current.status is not JobStatus.QUEUED:
                return True  # running: a lost lease, which `_take` settles
            attempt.state = current
        verdict = await self._executor.admit(attempt.state)
        if verdict is None:
            return True
        if isinstance(verdict, Hold):
            await attempt.msg.nak(delay=verdict.delay)
            return False
        error = verdict.error
        await self._append(attempt, lambda s: decide.fail(s, self._stamp(), error, retriable=False))
        log.info("job_refused", job_id=attempt.state.id, code=error.code)
        await attempt.msg.ack()
        return False

    async def _take(self, attempt: _Attempt, redelivered: bool) -> JobState | None:
        """Append JobStarted; None when the job is no longer ours to run."""
        state, wanted = attempt.state, attempt.state.attempt
        for _ in range(5):
            if state.status is JobStatus.QUEUED and state.attempt == wanted:
                event: AnyJobEvent = decide.start(
                    state, attempt=wanted, executor_id=self.id, stamp=self._stamp()
                )
            elif state.status is JobStatus.RUNNING and state.attempt == wanted and redelivered:
                # The lease lapsed: the executor that started this attempt is gone.
                error = JobError(
                    code="executor_lost", message=f"{state.executor_id} lost its lease"
                )
                event = decide.fail(state, self._stamp(), error, retriable=True)
            else:
                return None
            try:
                rec = await self._service.store.append(event, expected_seq=state.seq)
            except ConcurrencyConflict:
                state = await self._service.load(state.account, state.id)
                continue
            new = record(evolve(state, event), seq=rec.seq, digest=rec.digest)
            return new if new.status is JobStatus.RUNNING else None
        return None

    def _stamp(self) -> decide.Stamp:
        return self._service.stamp(self.id)

    async def _run(self, attempt: _Attempt) -> Outcome | None:
        state = attempt.state
        self._active[state.id] = attempt
        ctx = JobContext(
            state,
            validate_input(state.kind, state.input),
            record_step=lambda report: self._record_step(attempt, report),
            write_log=lambda channel, data: self._write_log(state, channel, data),
            sessions=self._sessions,
            executor_id=self.id,
        )
        if attempt.cancelled_by_user:
            return None
        attempt.task = asyncio.create_task(self._executor.run(ctx))
        heartbeat = asyncio.create_task(self._heartbeat(attempt.msg))
        try:
            return await attempt.task
        except asyncio.CancelledError:
            if attempt.cancelled_by_user:
                return None
            if self._stopping.is_set():
                error = JobError(code="executor_shutdown", message=f"{self.id} shut down")
                return Failed(error=error, retriable=True)
            raise
        except Exception as exc:
            log.exception("executor_failed", job_id=state.id)
            error = JobError(code="executor_error", message=f"{type(exc).__name__}: {exc}")
            return Failed(error=error, retriable=True)
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, msg: Msg) -> None:
        while True:
            await asyncio.sleep(self._lease / 3)
            with contextlib.suppress(nats.errors.Error):
                await msg.in_progress()

    async def _record_step(self, attempt: _Attempt, report: StepReport) -> None:
        fields = msgspec.structs.asdict(report)
        index = len(attempt.state.steps)
        await self._append(
            attempt,
            lambda s: decide.step_finished(s, self._stamp(), index=index, **dict(fields)),
        )

    async def _write_log(self, state: JobState, channel: str, data: bytes) -> None:
        await self._nc.publish(log_subject(state.account, state.id, state.attempt, channel), data)

    async def _finish(self, attempt: _Attempt, outcome: Outcome) -> None:
        state = attempt.state
        if isinstance(outcome, Succeeded):
            await self._append(attempt, lambda s: decide.succeed(s, self._stamp(), outcome.result))
            return
        retriable = outcome.retriable or (
            outcome.exit_code not in (None, 0) and state.retry_on_exit
        )
        await self._append(
            attempt,
            lambda s: decide.fail(
                s, self._stamp(), outcome.error, retriable=retriable, result=outcome.result
            ),
        )

    async def _append(self, attempt: _Attempt, decision: Callable[[JobState], AnyJobEvent]) -> None:
        """Append on the attempt's state; on a lost race re-read (a cancel wins, we stop)."""
        wanted = attempt.state.attempt

        def still_ours(state: JobState) -> AnyJobEvent | None:
            if state.status in TERMINAL or state.attempt != wanted:
                return None
            try:
                return decision(state)
            except InvalidTransition:
                return None

        try:
            decided = await append_decided(
                self._service.store,
                attempt.state,
                still_ours,
                reload=lambda: self._service.load(attempt.state.account, attempt.state.id),
                seq_of=lambda state: state.seq,
                tries=5,
            )
        except ConcurrencyConflict:
            return
        if decided is not None:
            state, event, rec = decided
            job_event = cast(AnyJobEvent, event)  # still_ours only ever returns job events
            attempt.state = record(evolve(state, job_event), seq=rec.seq, digest=rec.digest)

    async def stop(self, grace: float) -> None:
        """Take no new work; let running attempts finish within `grace`, else hand them back."""
        self._stopping.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        deadline = time.monotonic() + grace
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(deadline - time.monotonic(), 0.01))
        for attempt in list(self._active.values()):
            if attempt.task is not None:
                attempt.task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5.0)
        if self._beat_task is not None:
            self._beat_task.cancel()
        if self.keeper is not None:
            await self.keeper.stop()
        if self._presence_kv is not None:
            await leave(self._presence_kv, self._presence())
        await self._executor.stop()
        log.info("executor_stopped", executor_id=self.id)
