"""In-memory event store for unit tests: the same contract as JetStream, no server."""

from __future__ import annotations

import asyncio
import contextlib
from functools import partial

from engine.errors import ConcurrencyConflict
from engine.store import Handler, Recorded, Skip, recorded_from
from engine.subjects import aggregate_filter, partition_of
from schemas.events import encode_event
from schemas.log import AnyEvent, aggregate_of


def _grew(log: list[Recorded], seen: int) -> bool:
    return len(log) > seen


class _MemoryTail:
    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class MemoryEventStore:
    """Events in lists, one per partition, with a global sequence per partition."""

    def __init__(self, partitions: int = 2) -> None:
        self._partitions = partitions
        self._log: list[list[Recorded]] = [[] for _ in range(partitions)]
        self._last: dict[str, int] = {}
        self._changed = [asyncio.Condition() for _ in range(partitions)]

    @property
    def partitions(self) -> int:
        return self._partitions

    async def append(self, event: AnyEvent, *, expected_seq: int) -> Recorded:
        p = partition_of(event.account, self._partitions)
        scope = aggregate_filter(p, event.account, *aggregate_of(event))
        if self._last.get(scope, 0) != expected_seq:
            raise ConcurrencyConflict(scope, expected_seq)
        rec = recorded_from(p, len(self._log[p]) + 1, encode_event(event))
        self._log[p].append(rec)
        self._last[scope] = rec.seq
        async with self._changed[p]:
            self._changed[p].notify_all()
        return rec

    async def history(self, account: str, ident: str, aggregate: str = "job") -> list[Recorded]:
        p = partition_of(account, self._partitions)
        return [
            r
            for r in self._log[p]
            if r.event.account == account and aggregate_of(r.event) == (aggregate, ident)
        ]

    async def last_seq(self, partition: int) -> int:
        return len(self._log[partition])

    async def tail(
        self, partition: int, after_seq: int, handler: Handler, on_skip: Skip | None = None
    ) -> _MemoryTail:
        async def run() -> None:
            log = self._log[partition]
            position = after_seq
            while True:
                while position < len(log):
                    position += 1
                    await handler(log[position - 1])
                async with self._changed[partition]:
                    await self._changed[partition].wait_for(partial(_grew, log, position))

        return _MemoryTail(asyncio.create_task(run()))

    def tamper(self, partition: int, seq: int, data: bytes) -> None:
        """Overwrite a stored event (for audit tests)."""
        self._log[partition][seq - 1] = recorded_from(partition, seq, data)
