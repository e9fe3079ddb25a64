"""Live feeds of an account's events for SSE and WebSocket subscribers.

A subscriber that resumes after sequence N gets the events it missed read from the log, then
the live events the read model applies, with no gap and no duplicate at the seam: it is
registered for live events *before* the read model's applied sequence S is read (with no
await in between), so every event after S reaches its queue, and the log supplies N+1..S.
An account lives in one partition, so that partition's sequence orders all of its events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from typing import Protocol

import msgspec
import structlog

from engine.logread import Range
from engine.projection import ReadModel
from engine.store import Recorded, recorded_from
from engine.subscribers import EventFilter, kind_lookup
from schemas.audit import StoredMessage

log = structlog.get_logger("chaser.feed")

QUEUE_LIMIT = 100_000


class FeedEnded(Exception):
    """A subscriber's feed ended: it must resume from its last id (here or elsewhere)."""


class FeedOverflow(FeedEnded):
    """A subscriber fell too far behind the live events."""


class FeedClosed(FeedEnded):
    """The process is shutting down."""


class LogRanges(Protocol):
    """Reads ranges of the event log (engine.logread.LogReader)."""

    def read(self, span: Range) -> AsyncIterator[list[StoredMessage]]:
        """Every message of the range, in batches, in stream order."""


class _Subscriber:
    """One subscriber's queue of live events, bounded."""

    def __init__(self, limit: int) -> None:
        self.pending: deque[Recorded] = deque()
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self.wake = asyncio.Event()

    def push(self, rec: Recorded) -> None:
        if len(self.pending) >= self.limit:
            self.overflowed = True
        else:
            self.pending.append(rec)
        self.wake.set()

    async def take(self, timeout: float) -> list[Recorded]:
        """Everything queued, waiting up to `timeout` for something; [] when nothing came."""
        if not self.pending and not self.closed:
            if self.overflowed:
                raise FeedOverflow("the subscriber fell behind")
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout)
        if self.closed:
            raise FeedClosed("the server is shutting down")
        out = list(self.pending)
        self.pending.clear()
        return out


class EventFeed:
    """Fans the read model's applied events out to subscribers, per account."""

    def __init__(
        self, read_model: ReadModel, log_ranges: LogRanges, *, queue_limit: int = QUEUE_LIMIT
    ) -> None:
        self.read_model = read_model
        self._log = log_ranges
        self._limit = queue_limit
        self._subs: dict[str, set[_Subscriber]] = {}
        self._closed = False
        self.kind_of = kind_lookup(read_model.get)
        read_model.watch(self._on_event)

    @property
    def subscribers(self) -> int:
        """How many subscribers are following right now."""
        return sum(len(s) for s in self._subs.values())

    def position(self, account: str) -> int:
        """Where the account's live events stand now (the read model's applied sequence)."""
        return self.read_model.applied(self.read_model.partition_of(account))

    def close(self) -> None:
        """End every feed (at shutdown, so no HTTP connection waits on a live stream)."""
        self._closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.closed = True
                sub.wake.set()

    def _on_event(self, rec: Recorded) -> None:
        subs = self._subs.get(rec.event.account)
        if subs:
            for sub in subs:
                sub.push(rec)

    async def follow(
        self, account: str, flt: EventFilter, after: int | None, *, idle: float = 15.0
    ) -> AsyncIterator[list[Recorded]]:
        """Batches of the account's matching events after `after` (None: from now on), in
        order, forever; an empty batch every `idle` seconds without events (for keep-alives).
        Raises FeedOverflow when the subscriber falls more than the queue limit behind."""
        sub = _Subscriber(self._limit)
        sub.closed = self._closed
        subs = self._subs.setdefault(account, set())
        subs.add(sub)
        partition = self.read_model.partition_of(account)
        applied = self.read_model.applied(partition)  # no await since registering: the seam
        last = applied if after is None else after
        try:
            if last < applied:
                span = Range(
                    partition=partition, subject=flt.subject(partition, account), after=last
                )
                async for batch in self._replay(span, applied, flt):
                    yield batch
                last = applied
            while True:
                fresh = await sub.take(idle)
                batch = [r for r in fresh if r.seq > last and flt.matches(r.event, self.kind_of)]
                if fresh:
                    last = max(last, fresh[-1].seq)
                yield batch
        finally:
            subs.discard(sub)
            if not subs:
                self._subs.pop(account, None)

    async def _replay(
        self, span: Range, until: int, flt: EventFilter
    ) -> AsyncIterator[list[Recorded]]:
        span = msgspec.structs.replace(span, until=until)
        async for messages in self._log.read(span):
            batch = []
            for msg in messages:
                rec = _decoded(msg)
                if rec is not None and flt.matches(rec.event, self.kind_of):
                    batch.append(rec)
            if batch:
                yield batch


def _decoded(msg: StoredMessage) -> Recorded | None:
    try:
        return recorded_from(msg.partition, msg.seq, msg.data)
    except msgspec.DecodeError:
        log.warning("feed_undecodable_event", seq=msg.seq, subject=msg.subject)
        return None
