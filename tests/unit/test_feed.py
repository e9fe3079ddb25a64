"""The event feed on the in-memory store: replay then live with no gap and no duplicate at the
seam while appends keep landing, filters, overflow and shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from engine.feed import EventFeed, FeedClosed, FeedOverflow
from engine.logread import Range
from engine.memory import MemoryEventStore
from engine.projection import ReadModel
from engine.subjects import aggregate_subject
from engine.subscribers import EventFilter
from schemas.audit import StoredMessage
from schemas.events import JobCreated
from schemas.log import aggregate_of

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def _matches(pattern: str, subject: str) -> bool:
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or token not in ("*", got[i]):
            return False
    return len(want) == len(got)


class MemoryRanges:
    """The log reader's contract over the in-memory store, yielding in small batches."""

    def __init__(self, store: MemoryEventStore) -> None:
        self.store = store

    async def read(self, span: Range) -> AsyncIterator[list[StoredMessage]]:
        rows = []
        for rec in self.store._log[span.partition]:
            subject = aggregate_subject(
                rec.partition,
                rec.event.account,
                *aggregate_of(rec.event),
                type(rec.event).__name__,
            )
            inside = span.after < rec.seq <= (span.until or rec.seq)
            if inside and _matches(span.subject or ">", subject):
                rows.append(StoredMessage(rec.partition, rec.seq, subject, rec.data))
        for i in range(0, len(rows), 3):
            await asyncio.sleep(0)  # let appends interleave with the replay
            yield rows[i : i + 3]


def _created(account: str, n: int, kind: str = "system.echo") -> JobCreated:
    return JobCreated(
        event_id=f"{account}-{n}",
        account=account,
        at=T0,
        actor="test",
        job_id=f"job_{n}",
        kind=kind,
        input={},
    )


async def _setup(limit: int = 100_000) -> tuple[MemoryEventStore, ReadModel, EventFeed]:
    store = MemoryEventStore(partitions=1)
    read_model = ReadModel(store)
    feed = EventFeed(read_model, MemoryRanges(store), queue_limit=limit)
    await read_model.start()
    return store, read_model, feed


async def _collect(
    batches: AsyncIterator[list[object]], count: int, timeout: float = 5.0
) -> list[int]:
    seqs: list[int] = []

    async def run() -> None:
        async for batch in batches:
            seqs.extend(r.seq for r in batch)  # type: ignore[attr-defined]
            if len(seqs) >= count:
                return

    await asyncio.wait_for(run(), timeout)
    return seqs


@pytest.mark.parametrize("after", [0, 7, 25, None])
async def test_no_gap_and_no_duplicate_at_the_seam(after: int | None) -> None:
    store, read_model, feed = await _setup()
    for n in range(30):
        await store.append(_created("acme", n), expected_seq=0)
    await read_model.wait_for(0, 30, 5)

    async def keep_appending() -> None:
        for n in range(30, 80):
            await store.append(_created("acme", n), expected_seq=0)
            await store.append(_created("other", n), expected_seq=0)
            await asyncio.sleep(0)

    appending = asyncio.create_task(keep_appending())
    follow = feed.follow("acme", EventFilter(), after, idle=0.05)
    start = 30 if after is None else after
    # Account acme's events are seqs 1..30, then every other one from 31 on.
    expected = [s for s in [*range(1, 31), *range(31, 130, 2)] if s > start]
    seqs = await _collect(follow, len(expected))
    await appending
    await follow.aclose()
    if after is None:  # from now on: whatever landed after subscribing, in order
        assert seqs == expected[-len(seqs) :]
    else:
        assert seqs == expected


async def test_filters_apply_to_replay_and_live() -> None:
    store, _, feed = await _setup()
    await store.append(_created("acme", 1, kind="system.echo"), expected_seq=0)
    await store.append(_created("acme", 2, kind="workspace.delete"), expected_seq=0)
    follow = feed.follow("acme", EventFilter(kinds=frozenset({"workspace.delete"})), 0, idle=0.05)
    replayed = await _collect(follow, 1)
    await store.append(_created("acme", 3, kind="system.echo"), expected_seq=0)
    await store.append(_created("acme", 4, kind="workspace.delete"), expected_seq=0)
    live = await _collect(follow, 1)
    assert (replayed, live) == ([2], [4])
    by_job = feed.follow("acme", EventFilter(job_id="job_3"), 0, idle=0.05)
    assert await _collect(by_job, 1) == [3]


async def test_a_subscriber_too_far_behind_is_told_to_resume() -> None:
    store, _, feed = await _setup(limit=3)
    follow = feed.follow("acme", EventFilter(), None, idle=0.05)
    first = asyncio.ensure_future(follow.__anext__())
    await asyncio.sleep(0)
    for n in range(10):
        await store.append(_created("acme", n), expected_seq=0)
    await first
    with pytest.raises(FeedOverflow):
        while True:
            await follow.__anext__()


async def test_closing_the_feed_ends_every_subscriber() -> None:
    _, _, feed = await _setup()
    follow = feed.follow("acme", EventFilter(), None, idle=10)
    waiting = asyncio.ensure_future(follow.__anext__())
    await asyncio.sleep(0.01)
    assert feed.subscribers == 1
    feed.close()
    with pytest.raises(FeedClosed):
        await waiting
    assert feed.subscribers == 0
