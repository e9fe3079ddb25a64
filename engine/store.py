"""The event store port: append with optimistic concurrency, read a job, tail a partition."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Protocol

import msgspec

from schemas.log import AnyEvent, decode_event


class Recorded(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """An event as stored: its partition, stream sequence, digest and decoded form."""

    partition: int
    seq: int
    digest: str
    event: AnyEvent
    data: bytes


Handler = Callable[[Recorded], Awaitable[None]]
Skip = Callable[[int, int, str], None]


class Tail(Protocol):
    """A live subscription to a partition; `stop` ends it."""

    async def stop(self) -> None:
        """End the subscription."""


class EventStore(Protocol):
    """Where events are kept. JetStream in production, memory in unit tests."""

    @property
    def partitions(self) -> int:
        """How many partitions accounts are spread over."""

    async def append(self, event: AnyEvent, *, expected_seq: int) -> Recorded:
        """Append if the aggregate's newest event is at `expected_seq` (0: no events yet).

        Raises ConcurrencyConflict when another writer moved the job first.
        """

    async def history(self, account: str, ident: str, aggregate: str = "job") -> list[Recorded]:
        """Every stored event of one aggregate instance (a job by default), oldest first."""

    async def last_seq(self, partition: int) -> int:
        """The newest sequence in a partition (0 when empty)."""

    async def tail(
        self, partition: int, after_seq: int, handler: Handler, on_skip: Skip | None = None
    ) -> Tail:
        """Call `handler` for every event after `after_seq`, in order, then live; a stored
        message that does not decode is passed to `on_skip(partition, seq, reason)`."""


def digest_of(data: bytes) -> str:
    """The hash an event's successor carries as `prev_hash`."""
    return hashlib.sha256(data).hexdigest()


def recorded_from(partition: int, seq: int, data: bytes) -> Recorded:
    """Decode stored bytes into a Recorded event."""
    return Recorded(
        partition=partition,
        seq=seq,
        digest=digest_of(data),
        event=decode_event(data),
        data=data,
    )
