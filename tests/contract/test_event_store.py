"""The event store contract, run against the in-memory store and JetStream on a real server."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from msgspec.structs import replace

from engine.errors import ConcurrencyConflict
from engine.jetstream import JetStreamEventStore, bootstrap, connect
from engine.memory import MemoryEventStore
from engine.settings import Settings
from engine.store import EventStore, Recorded, recorded_from
from engine.subjects import partition_of
from schemas.common import StepStatus
from schemas.events import AnyJobEvent, JobCreated, StepFinished, decode_job_event, encode_event

PARTITIONS = 3
T0 = datetime(2030, 1, 1, tzinfo=UTC)
WAIT = 5.0  # seconds an awaited delivery may take before the test fails


def account_in(partition: int, *, skip: int = 0) -> str:
    """An account id that lands in `partition` (the `skip`-th such id)."""
    matching = (
        name
        for name in (f"acct-{i}" for i in itertools.count())
        if partition_of(name, PARTITIONS) == partition
    )
    return next(itertools.islice(matching, skip, None))


def job_event(account: str, job_id: str, n: int, *, prev_hash: str = "") -> AnyJobEvent:
    """Event `n` of a job: its creation for 0, then finished steps."""
    envelope: dict[str, Any] = {
        "event_id": f"{account}-{job_id}-{n}",
        "account": account,
        "at": T0 + timedelta(seconds=n),
        "actor": "contract-test",
        "job_id": job_id,
        "prev_hash": prev_hash,
    }
    if n == 0:
        return JobCreated(**envelope, kind="system.echo", input={"message": job_id})
    return StepFinished(
        **envelope, index=n, name=f"step-{n}", status=StepStatus.SUCCEEDED, result={"n": n}
    )


async def append_chain(store: EventStore, account: str, job_id: str, count: int) -> list[Recorded]:
    """Append `count` events to a job, each expecting the job's newest and hashing it."""
    history = await store.history(account, job_id)
    last = history[-1] if history else None
    out: list[Recorded] = []
    for n in range(len(history), len(history) + count):
        event = job_event(account, job_id, n, prev_hash=last.digest if last else "")
        last = await store.append(event, expected_seq=last.seq if last else 0)
        out.append(last)
    return out


def chain_breaks(records: Sequence[Recorded]) -> list[int]:
    """Positions where a record's digest or its link to the previous record is wrong."""
    breaks = []
    for i, rec in enumerate(records):
        previous = records[i - 1].digest if i else ""
        if rec.digest != hashlib.sha256(rec.data).hexdigest() or rec.event.prev_hash != previous:
            breaks.append(i)
    return breaks


class Collector:
    """A tail handler that queues what it is given, so tests await deliveries."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Recorded] = asyncio.Queue()

    async def __call__(self, rec: Recorded) -> None:
        await self.queue.put(rec)

    async def take(self, count: int) -> list[Recorded]:
        async with asyncio.timeout(WAIT):
            return [await self.queue.get() for _ in range(count)]


# --- the two stores -------------------------------------------------------------------


@pytest.fixture
def memory_store() -> MemoryEventStore:
    return MemoryEventStore(partitions=PARTITIONS)


@pytest.fixture
async def jetstream_store(nats_url: str) -> AsyncIterator[JetStreamEventStore]:
    nc = await connect(nats_url)
    try:
        js = nc.jetstream()
        settings = Settings(partitions=PARTITIONS, nats_url=nats_url, replicas=1)
        boot = await bootstrap(js, settings)
        assert boot.partitions == PARTITIONS
        yield JetStreamEventStore(js, boot.partitions)
    finally:
        await nc.close()


@pytest.fixture(params=["memory_store", "jetstream_store"])
def store(request: pytest.FixtureRequest) -> EventStore:
    result: EventStore = request.getfixturevalue(request.param)
    return result


# --- the contract ---------------------------------------------------------------------


async def test_append_to_a_new_job_expects_zero(store: EventStore) -> None:
    account = account_in(0)
    event = job_event(account, "job_a", 0)
    rec = await store.append(event, expected_seq=0)
    assert rec.seq >= 1
    assert rec.partition == partition_of(account, PARTITIONS)
    assert rec.event == event
    assert await store.history(account, "job_a") == [rec]
    assert await store.last_seq(rec.partition) == rec.seq


async def test_a_stale_expected_seq_is_a_conflict(store: EventStore) -> None:
    account = account_in(1)
    first, second = await append_chain(store, account, "job_a", 2)
    stale = job_event(account, "job_a", 9)
    for expected in (0, first.seq, second.seq + 1000):
        with pytest.raises(ConcurrencyConflict):
            await store.append(stale, expected_seq=expected)
    assert await store.history(account, "job_a") == [first, second]
    third = await store.append(stale, expected_seq=second.seq)
    assert third.seq > second.seq


async def test_a_new_job_must_expect_zero(store: EventStore) -> None:
    with pytest.raises(ConcurrencyConflict):
        await store.append(job_event(account_in(2), "job_new", 0), expected_seq=1)
    assert await store.history(account_in(2), "job_new") == []


async def test_another_jobs_appends_do_not_conflict(store: EventStore) -> None:
    account = account_in(0)
    [a] = await append_chain(store, account, "job_a", 1)
    [b] = await append_chain(store, account, "job_b", 1)
    # job_b moved the partition, not job_a: job_a's expected sequence is still a's own.
    c = await store.append(job_event(account, "job_a", 1, prev_hash=a.digest), expected_seq=a.seq)
    assert a.seq < b.seq < c.seq


async def test_concurrent_appends_with_the_same_expectation_one_wins(store: EventStore) -> None:
    account = account_in(1)
    [created] = await append_chain(store, account, "job_a", 1)
    step = job_event(account, "job_a", 1, prev_hash=created.digest)
    contenders = [replace(step, event_id=f"racer-{i}") for i in range(5)]
    outcomes = await asyncio.gather(
        *(store.append(e, expected_seq=created.seq) for e in contenders), return_exceptions=True
    )
    winners = [o for o in outcomes if isinstance(o, Recorded)]
    losers = [o for o in outcomes if not isinstance(o, Recorded)]
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ConcurrencyConflict) for o in losers), losers
    assert await store.history(account, "job_a") == [created, winners[0]]


async def test_history_is_one_jobs_events_in_order(store: EventStore) -> None:
    account, neighbour = account_in(2), account_in(2, skip=1)
    mine: list[Recorded] = []
    last: dict[str, Recorded] = {}
    # Interleave the job with another job of the account and a job of a neighbour sharing
    # the partition.
    for n in range(4):
        for acct, job_id in ((account, "job_a"), (account, "job_b"), (neighbour, "job_a")):
            prev = last.get(f"{acct}/{job_id}")
            event = job_event(acct, job_id, n, prev_hash=prev.digest if prev else "")
            rec = await store.append(event, expected_seq=prev.seq if prev else 0)
            last[f"{acct}/{job_id}"] = rec
            if (acct, job_id) == (account, "job_a"):
                mine.append(rec)
    history = await store.history(account, "job_a")
    assert history == mine
    assert [r.seq for r in history] == sorted(r.seq for r in history)
    assert {(r.event.account, r.event.job_id) for r in history} == {(account, "job_a")}
    assert await store.history(account, "job_missing") == []


async def test_accounts_land_in_their_partitions(store: EventStore) -> None:
    assert store.partitions == PARTITIONS
    accounts = [account_in(p, skip=s) for p in range(PARTITIONS) for s in range(2)]
    for count, account in enumerate(accounts, start=1):
        for rec in await append_chain(store, account, "job_a", count):
            assert rec.partition == partition_of(account, PARTITIONS)
    for p in range(PARTITIONS):
        in_p = [(i, a) for i, a in enumerate(accounts, start=1) if partition_of(a, PARTITIONS) == p]
        assert await store.last_seq(p) == sum(i for i, _ in in_p)
    for count, account in enumerate(accounts, start=1):
        history = await store.history(account, "job_a")
        assert len(history) == count
        assert {r.partition for r in history} == {partition_of(account, PARTITIONS)}


async def test_tail_delivers_the_backlog_in_order_then_live_events(store: EventStore) -> None:
    p = 1
    account, elsewhere = account_in(p), account_in(p + 1)
    backlog = await append_chain(store, account, "job_a", 4)
    await append_chain(store, elsewhere, "job_a", 2)  # another partition: never delivered
    collector = Collector()
    tail = await store.tail(p, backlog[0].seq, collector)
    try:
        assert await collector.take(3) == backlog[1:]
        live = await append_chain(store, account, "job_b", 2)
        await append_chain(store, elsewhere, "job_b", 1)
        live += await append_chain(store, account, "job_a", 1)
        assert await collector.take(3) == live
    finally:
        await tail.stop()
    assert collector.queue.empty()

    # After stop nothing more arrives: a second tail sees a new event, the stopped one not.
    [after_stop] = await append_chain(store, account, "job_c", 1)
    witness = Collector()
    second = await store.tail(p, after_stop.seq - 1, witness)
    try:
        assert await witness.take(1) == [after_stop]
    finally:
        await second.stop()
    assert collector.queue.empty()


async def test_tail_from_the_end_delivers_only_live_events(store: EventStore) -> None:
    p = 0
    account = account_in(p)
    await append_chain(store, account, "job_a", 2)
    collector = Collector()
    tail = await store.tail(p, await store.last_seq(p), collector)
    try:
        live = await append_chain(store, account, "job_b", 2)
        assert await collector.take(2) == live
    finally:
        await tail.stop()


async def test_tail_of_an_empty_partition_waits_for_the_first_event(store: EventStore) -> None:
    p = 2
    collector = Collector()
    tail = await store.tail(p, 0, collector)
    try:
        live = await append_chain(store, account_in(p), "job_a", 1)
        assert await collector.take(1) == live
    finally:
        await tail.stop()


async def test_digest_is_the_sha256_of_the_stored_bytes(store: EventStore) -> None:
    account = account_in(0)
    event = job_event(account, "job_a", 0)
    rec = await store.append(event, expected_seq=0)
    assert rec.data == encode_event(event)
    assert decode_job_event(rec.data) == event
    assert rec.digest == hashlib.sha256(rec.data).hexdigest()
    [stored] = await store.history(account, "job_a")
    assert (stored.data, stored.digest) == (rec.data, rec.digest)


async def test_a_hash_chain_verifies_and_a_forged_link_does_not(store: EventStore) -> None:
    account = account_in(1)
    appended = await append_chain(store, account, "job_a", 5)
    history = await store.history(account, "job_a")
    assert history == appended
    assert chain_breaks(history) == []

    forged = job_event(account, "job_a", 2, prev_hash=history[1].digest)
    forged_bytes = encode_event(forged).replace(b'"n":2', b'"n":7')
    tampered = [*history[:2], recorded_from(history[2].partition, history[2].seq, forged_bytes)]
    assert chain_breaks([*tampered, *history[3:]]) == [3]  # the next link no longer matches
    assert chain_breaks([history[0], *history[2:]]) == [1]  # a removed event shows too
