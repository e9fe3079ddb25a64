"""The read model: every partition's events folded into job state, queryable by the API.

Rebuilding from zero and live tailing are the same code: a tail from sequence 0.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import structlog
from msgspec.structs import replace

from engine.errors import InvalidInput, InvalidTransition
from engine.fold import evolve, record
from engine.sessions import evolve_session, evolve_workspace
from engine.store import EventStore, Recorded, Tail
from engine.subjects import partition_of
from schemas.common import JobStatus
from schemas.events import AnyJobEvent, JobEvent, JobStarted
from schemas.sessions import SessionEvent, SessionState, WorkspaceEvent, WorkspaceState
from schemas.state import JobState

log = structlog.get_logger("chaser.projection")

Listener = Callable[[JobState | None, JobState, Recorded], None]
# Folds a partition's stored events up to a sequence, in batches, through `apply_batch`
# (engine.auditlog.bulk_catch_up).
CatchUp = Callable[[int, int, Callable[[Sequence[Recorded]], None]], Awaitable[None]]


class ListFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of `GET /v1/jobs`."""

    status: frozenset[JobStatus] | None = None
    kind: frozenset[str] | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None

    def matches(self, job: JobState) -> bool:
        """Whether a job passes every filter."""
        if self.status is not None and job.status not in self.status:
            return False
        if self.kind is not None and job.kind not in self.kind:
            return False
        if self.created_after is not None and job.created_at <= self.created_after:
            return False
        return self.created_before is None or job.created_at < self.created_before


class _Cursor(msgspec.Struct, frozen=True, array_like=True):
    position: int


def encode_cursor(position: int) -> str:
    """An opaque cursor pointing just below `position` in an account's creation order."""
    return base64.urlsafe_b64encode(msgspec.json.encode(_Cursor(position))).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position inside a cursor; raises InvalidInput for anything malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        position = msgspec.json.decode(raw, type=_Cursor).position
    except (binascii.Error, ValueError, msgspec.DecodeError) as exc:
        raise InvalidInput("cursor", "not a cursor returned by this API") from exc
    if position < 0:
        raise InvalidInput("cursor", "not a cursor returned by this API")
    return position


@dataclass
class _Account:
    order: list[str] = field(default_factory=list)


class ReadModel:
    """Job state by id and by account, with the sequence applied per partition."""

    def __init__(self, store: EventStore) -> None:
        self._store = store
        self._jobs: dict[tuple[str, str], JobState] = {}
        self._accounts: dict[str, _Account] = {}
        self._applied = [0] * store.partitions
        self._waiters: list[list[tuple[int, asyncio.Future[None]]]] = [
            [] for _ in range(store.partitions)
        ]
        self._listeners: list[Listener] = []
        self._watchers: list[Callable[[Recorded], None]] = []
        self._sessions: dict[tuple[str, str], SessionState] = {}
        self._workspaces: dict[tuple[str, str], WorkspaceState] = {}
        self._workspace_used: dict[tuple[str, str], datetime] = {}
        self._tails: list[Tail] = []
        self._ready = asyncio.Event()
        self._targets: list[int] = []
        self.events_applied = 0
        self.rejected: list[tuple[Recorded, str]] = []
        self.undecodable: list[tuple[int, int, str]] = []
        self.lag_seconds = 0.0

    def listen(self, listener: Listener) -> None:
        """Call `listener(before, after, recorded)` for every event applied."""
        self._listeners.append(listener)

    def watch(self, watcher: Callable[[Recorded], None]) -> None:
        """Call `watcher(recorded)` for every event of any aggregate, after it is applied."""
        self._watchers.append(watcher)

    async def start(self, catch_up: CatchUp | None = None) -> None:
        """Tail every partition from the beginning; `ready` is set once caught up.

        `catch_up(partition, seq, apply_batch)`, when given, first folds what is stored up to
        the start-up target with the same fold, faster (bulk reads); the tails take over from
        there."""
        self._targets = [await self._store.last_seq(p) for p in range(self._store.partitions)]
        if catch_up is not None:
            for p, target in enumerate(self._targets):
                await catch_up(p, target, self.apply_batch)
        for p in range(self._store.partitions):
            self._tails.append(await self._store.tail(p, self._applied[p], self._apply, self._skip))
        self._check_ready()

    async def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until the read model has caught up with the log as it was at start."""
        await asyncio.wait_for(self._ready.wait(), timeout)

    @property
    def ready(self) -> bool:
        """Whether the initial catch-up has finished."""
        return self._ready.is_set()

    async def stop(self) -> None:
        """Stop tailing."""
        for tail in self._tails:
            await tail.stop()
        self._tails.clear()

    def _skip(self, partition: int, seq: int, reason: str) -> None:
        """A stored message that does not decode: counted as applied, kept for the auditor."""
        self.undecodable.append((partition, seq, reason))
        self._advance(partition, seq)

    def _check_ready(self) -> None:
        if not self._ready.is_set() and all(
            a >= t for a, t in zip(self._applied, self._targets, strict=True)
        ):
            self._ready.set()

    async def _apply(self, rec: Recorded) -> None:
        self.apply(rec)

    def apply(self, rec: Recorded) -> None:
        """Fold one stored event in (the live tail's handler)."""
        self._fold(rec)
        self._settle(rec)

    def apply_batch(self, recs: Sequence[Recorded]) -> None:
        """Fold a batch of one partition's events, in order (a bulk catch-up's step): the same
        fold per event, with the lag and the applied position settled once, after the batch."""
        for rec in recs:
            self._fold(rec)
        if recs:
            self._settle(recs[-1])

    def _fold(self, rec: Recorded) -> None:
        event = rec.event
        try:
            if isinstance(event, JobEvent):
                self._apply_job(rec, event)
            elif isinstance(event, SessionEvent):
                key = (event.account, event.session_id)
                state = evolve_session(self._sessions.get(key), event)
                self._sessions[key] = replace(state, seq=rec.seq, last_hash=rec.digest)
            elif isinstance(event, WorkspaceEvent):
                key = (event.account, event.workspace)
                ws = evolve_workspace(self._workspaces.get(key), event)
                self._workspaces[key] = replace(ws, seq=rec.seq, last_hash=rec.digest)
        except InvalidTransition as exc:
            # The writers check transitions before appending; a stored event that does not
            # fold is for the auditor to report, never silently applied.
            self.rejected.append((rec, str(exc)))
            log.error("event_rejected", seq=rec.seq, subject_id=str(exc), reason=str(exc))
        for watcher in self._watchers:
            watcher(rec)
        self.events_applied += 1

    def _settle(self, rec: Recorded) -> None:
        # Lag: how long after its append the newest event was folded (0 when idle).
        self.lag_seconds = max(time.time() - rec.event.at.timestamp(), 0.0)
        self._advance(rec.partition, rec.seq)

    def _apply_job(self, rec: Recorded, event: AnyJobEvent) -> None:
        key = (event.account, event.job_id)
        before = self._jobs.get(key)
        after = record(evolve(before, event), seq=rec.seq, digest=rec.digest)
        self._jobs[key] = after
        workspace = after.input.get("workspace")
        if isinstance(event, JobStarted) and isinstance(workspace, str):
            self._workspace_used[(event.account, workspace)] = event.at
        if before is None:
            self._accounts.setdefault(event.account, _Account()).order.append(event.job_id)
        for listener in self._listeners:
            listener(before, after, rec)

    def _advance(self, partition: int, seq: int) -> None:
        self._applied[partition] = seq
        waiters = self._waiters[partition]
        if waiters:
            keep = []
            for target, fut in waiters:
                if target <= seq:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((target, fut))
            self._waiters[partition] = keep
        # Only the event that reaches its partition's start-up target can complete the catch-up.
        if not self._ready.is_set() and self._targets and seq >= self._targets[partition]:
            self._check_ready()

    def applied(self, partition: int) -> int:
        """The last sequence applied from a partition."""
        return self._applied[partition]

    async def wait_for(self, partition: int, seq: int, timeout: float) -> bool:
        """Wait (bounded) until `seq` of `partition` is applied; False on timeout."""
        if self._applied[partition] >= seq:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[partition].append((seq, fut))
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        return True

    def partition_of(self, account: str) -> int:
        """The partition holding an account's events."""
        return partition_of(account, self._store.partitions)

    def get(self, account: str, job_id: str) -> JobState | None:
        """A job of an account, or None."""
        return self._jobs.get((account, job_id))

    def session(self, account: str, session_id: str) -> SessionState | None:
        """A session of an account, or None."""
        return self._sessions.get((account, session_id))

    def sessions(self, account: str | None = None) -> list[SessionState]:
        """An account's sessions (every account's when None), oldest first."""
        found = [s for (a, _), s in self._sessions.items() if account is None or a == account]
        return sorted(found, key=lambda s: s.created_at)

    def workspace(self, account: str, name: str) -> WorkspaceState | None:
        """A workspace of an account (deleted ones too), or None."""
        return self._workspaces.get((account, name))

    def workspace_last_used(self, account: str, name: str) -> datetime | None:
        """When a job last started on a workspace."""
        return self._workspace_used.get((account, name))

    def workspaces(self, account: str | None = None) -> list[WorkspaceState]:
        """An account's workspaces that exist now (every account's when None), by name."""
        found = [
            w
            for (a, _), w in self._workspaces.items()
            if (account is None or a == account) and w.deleted_at is None
        ]
        return sorted(found, key=lambda w: (w.account, w.name))

    def jobs(self) -> Iterator[JobState]:
        """Every job, in no particular order."""
        return iter(self._jobs.values())

    def accounts(self) -> list[str]:
        """Accounts that have at least one job."""
        return list(self._accounts)

    def page(
        self, account: str, flt: ListFilter, *, limit: int, cursor: int | None
    ) -> tuple[list[JobState], int | None]:
        """Newest-first jobs of an account after `cursor`, and the next cursor if any remain."""
        order = self._accounts.get(account, _Account()).order
        position = len(order) if cursor is None else min(cursor, len(order))
        out: list[JobState] = []
        while position > 0 and len(out) < limit:
            position -= 1
            job = self._jobs[(account, order[position])]
            if flt.matches(job):
                out.append(job)
        more = position > 0 and any(
            flt.matches(self._jobs[(account, order[i])]) for i in range(position - 1, -1, -1)
        )
        return out, (position if more else None)
