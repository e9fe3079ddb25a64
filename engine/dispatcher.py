"""The dispatcher: releases runnable jobs to the work queue, fairly between accounts.

It reacts to the read model: a job that became queued joins its account's backlog; an account
has at most its concurrency limit of jobs released or running; scheduled jobs and automatic
retries wait on timers. All of it is rebuilt from the log after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

import structlog

from engine import decide
from engine.appending import append_decided
from engine.errors import ConcurrencyConflict, InvalidTransition, StoreUnavailable
from engine.projection import ReadModel
from engine.sandbox import serial_key
from engine.service import JobService
from engine.store import Recorded
from schemas.common import TERMINAL, JobStatus
from schemas.events import AnyJobEvent
from schemas.kinds import KINDS
from schemas.state import JobState
from schemas.work import WorkItem

log = structlog.get_logger("chaser.dispatcher")

ACTOR = "dispatcher"
Key = tuple[str, str]
Lane = tuple[str, str]  # (account, executor family)
# How far past a busy workspace's waiting jobs the gate looks for other runnable jobs.
SERIAL_SCAN = 256


class WorkQueue(Protocol):
    """Where released attempts go for executors to take."""

    async def release(self, item: WorkItem) -> None:
        """Publish one attempt (idempotent per job and attempt)."""


class Dispatcher:
    """Backlogs per account, a concurrency gate, and timers for `run_at` and backoff."""

    def __init__(
        self,
        service: JobService,
        queue: WorkQueue,
        *,
        default_limit: int,
        limits: dict[str, int] | None = None,
        clock: Callable[[], datetime] | None = None,
        jitter: Callable[[], float] = random.random,
        available: Callable[[str], bool] = lambda family: True,
    ) -> None:
        self._service = service
        self._read: ReadModel = service.read_model
        self._queue = queue
        self.default_limit = default_limit
        self.limits: dict[str, int] = dict(limits or {})
        self._clock = clock or (lambda: datetime.now(UTC))
        self._jitter = jitter
        self._available = available
        self._dirty: set[Key] = set()
        self._backlog: dict[Lane, deque[Key]] = {}
        self._queued: set[Key] = set()
        self._inflight: dict[str, set[Key]] = {}
        self._timers: list[tuple[datetime, str, str]] = []
        self._kick = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.released = 0
        self._read.listen(self._on_event)

    def _on_event(self, before: JobState | None, after: JobState, rec: Recorded) -> None:
        self._dirty.add((after.account, after.id))
        self._kick.set()

    def set_limit(self, account: str, limit: int | None) -> None:
        """Change an account's concurrency limit at run time."""
        if limit is None:
            self.limits.pop(account, None)
        else:
            self.limits[account] = limit
        self._kick.set()

    def limit_of(self, account: str) -> int:
        """The concurrency limit in force for an account."""
        return self.limits.get(account, self.default_limit)

    def backlog_depth(self) -> dict[str, int]:
        """Queued jobs per kind that wait for release or for an executor."""
        depth: dict[str, int] = {}
        for key in self._queued:
            job = self._read.get(*key)
            if job is not None:
                depth[job.kind] = depth.get(job.kind, 0) + 1
        for keys in self._inflight.values():
            for key in keys:
                job = self._read.get(*key)
                if job is not None and job.status is JobStatus.QUEUED:
                    depth[job.kind] = depth.get(job.kind, 0) + 1
        return depth

    async def start(self) -> None:
        """Run once the read model has caught up, so decisions see the whole log."""
        self._task = asyncio.create_task(self._run(), name="dispatcher")

    async def stop(self) -> None:
        """Stop releasing work."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        await self._read.wait_ready()
        log.info("dispatcher_started", jobs=len(self._dirty))
        while True:
            timeout = self._next_timer_in()
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._kick.wait(), timeout)
            self._kick.clear()
            try:
                await self._tick()
            except Exception as exc:
                # The dispatcher must outlive a NATS outage: log, wait, look again.
                log.warning("dispatcher_tick_failed", error=repr(exc))
                await asyncio.sleep(0.5)
                self._kick.set()

    async def _tick(self) -> None:
        dirty, self._dirty = self._dirty, set()
        retries: list[JobState] = []
        for key in dirty:
            job = self._read.get(*key)
            if job is not None and self._track(job):
                retries.append(job)
        await asyncio.gather(*(self._auto_retry(job) for job in retries))
        await self._fire_timers()
        await self._release()

    def _track(self, job: JobState) -> bool:
        """Update backlog, in-flight set and timers for a job; True if it wants a retry."""
        key = (job.account, job.id)
        inflight = self._inflight.setdefault(job.account, set())
        if job.status is JobStatus.QUEUED:
            if key not in inflight and key not in self._queued:
                self._queued.add(key)
                lane = (job.account, KINDS[job.kind].family if job.kind in KINDS else job.kind)
                self._backlog.setdefault(lane, deque()).append(key)
            return False
        self._queued.discard(key)
        if job.status is JobStatus.RUNNING:
            inflight.add(key)
            return False
        inflight.discard(key)
        if job.status is JobStatus.SCHEDULED and job.run_at is not None:
            heapq.heappush(self._timers, (job.run_at, job.account, job.id))
        return job.status in TERMINAL and decide.wants_retry(job)

    def kick(self) -> None:
        """Look again at the backlog (an executor family came up, a limit changed)."""
        self._kick.set()

    def _stamp(self) -> decide.Stamp:
        return self._service.stamp(ACTOR)

    def _next_timer_in(self) -> float | None:
        if not self._timers:
            return None
        return max((self._timers[0][0] - self._clock()).total_seconds(), 0.0)

    async def _fire_timers(self) -> None:
        now = self._clock()
        due: list[JobState] = []
        while self._timers and self._timers[0][0] <= now:
            _, account, job_id = heapq.heappop(self._timers)
            job = self._read.get(account, job_id)
            if job is not None and job.status is JobStatus.SCHEDULED:
                due.append(job)
        await asyncio.gather(*(self._append_for(job, self._queue_due) for job in due))

    def _queue_due(self, job: JobState) -> AnyJobEvent | None:
        if job.status is not JobStatus.SCHEDULED or (job.run_at and job.run_at > self._clock()):
            return None
        return decide.queue_due(job, self._stamp())

    async def _auto_retry(self, job: JobState) -> None:
        jitter = self._jitter()
        await self._append_for(job, lambda j: decide.auto_retry(j, self._stamp(), jitter))

    async def _append_for(
        self, job: JobState, decision: Callable[[JobState], AnyJobEvent | None]
    ) -> None:
        """Append what `decision` says; on a lost race re-read and decide again (three times,
        then leave it: whoever won moved the job on)."""

        def still_wanted(current: JobState) -> AnyJobEvent | None:
            try:
                return decision(current)
            except InvalidTransition:
                return None

        try:
            decided = await append_decided(
                self._service.store,
                job,
                still_wanted,
                reload=lambda: self._service.load(job.account, job.id),
                seq_of=lambda state: state.seq,
                tries=3,
            )
        except ConcurrencyConflict:
            return
        if decided is not None:
            _, event, rec = decided
            log.info(
                "job_" + type(event).__name__.removeprefix("Job").lower(),
                account=job.account,
                job_id=job.id,
                seq=rec.seq,
            )

    async def _release(self) -> None:
        """Release backlog jobs, round-robin over accounts, while each is under its limit."""
        batch: list[WorkItem] = []
        progress = True
        while progress:
            progress = False
            for lane in list(self._backlog):
                if not self._available(lane[1]):
                    continue
                job = self._next_runnable(lane)
                if job is None:
                    continue
                self._inflight.setdefault(job.account, set()).add((job.account, job.id))
                batch.append(WorkItem(state=job))
                progress = True
        if not batch:
            return
        outcomes = await asyncio.gather(
            *(self._queue.release(item) for item in batch), return_exceptions=True
        )
        failed = [item for item, out in zip(batch, outcomes, strict=True) if out is not None]
        self.released += len(batch) - len(failed)
        for item in failed:
            # Not released after all (the work stream did not answer): back to its backlog,
            # marked dirty, so the next tick tries again.
            key = (item.state.account, item.state.id)
            self._inflight[item.state.account].discard(key)
            self._dirty.add(key)
        if failed:
            raise StoreUnavailable(f"{len(failed)} releases failed: {outcomes[0]!r}")

    def _next_runnable(self, lane: Lane) -> JobState | None:
        """The lane's first queued job whose workspace (or session) no in-flight job holds;
        jobs behind a busy workspace keep their place (up to SERIAL_SCAN of them)."""
        account = lane[0]
        backlog = self._backlog[lane]
        inflight = self._inflight.setdefault(account, set())
        busy: set[str] | None = None  # computed once a job that needs it is met
        waiting: list[Key] = []
        found: JobState | None = None
        while backlog and len(inflight) < self.limit_of(account) and len(waiting) < SERIAL_SCAN:
            key = backlog.popleft()
            job = self._read.get(*key)
            if job is None or job.status is not JobStatus.QUEUED:
                self._queued.discard(key)
                continue
            serial = self._serial(job)
            busy = self._busy(inflight) if serial is not None and busy is None else busy
            if busy is not None and serial in busy:
                waiting.append(key)
                continue
            self._queued.discard(key)
            found = job
            break
        backlog.extendleft(reversed(waiting))
        if not backlog:
            del self._backlog[lane]
        return found

    def _serial(self, job: JobState) -> str | None:
        def session_workspace(account: str, session_id: str) -> str | None:
            session = self._read.session(account, session_id)
            return session.workspace if session is not None else None

        return serial_key(job, session_workspace)

    def _busy(self, inflight: set[Key]) -> set[str]:
        """Workspaces (and sessions) held by an account's released or running jobs."""
        held: set[str] = set()
        for key in inflight:
            job = self._read.get(*key)
            serial = self._serial(job) if job is not None else None
            if serial is not None:
                held.add(serial)
        return held
