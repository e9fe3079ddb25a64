"""Reading an account's log for auditors and rebuilding read models from it (the shell around
`engine.audit`): an account's messages in stream order, the stream facts that explain gaps,
and a whole-log rebuild with progress."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from engine.errors import StoreUnavailable
from engine.logread import LogReader, Range
from engine.projection import CatchUp, ReadModel
from engine.store import Recorded, recorded_from
from engine.subjects import META_BUCKET, account_filter, partition_of, stream_name
from schemas.audit import StoredMessage

log = structlog.get_logger("chaser.auditlog")


class StreamFacts(msgspec.Struct, frozen=True, kw_only=True):
    """A partition stream's retained range and the sequences deleted inside it."""

    first_seq: int
    last_seq: int
    messages: int
    deleted: list[int] = []


async def stream_facts(js: JetStreamContext, partition: int) -> StreamFacts:
    """First and last sequence of a partition stream and its interior deletions."""
    nc: NATS = js._nc  # the STREAM.INFO option `deleted_details` has no nats-py helper
    name = stream_name(partition)
    try:
        reply = await nc.request(
            f"$JS.API.STREAM.INFO.{name}", msgspec.json.encode({"deleted_details": True}), 5.0
        )
    except nats.errors.Error as exc:
        raise StoreUnavailable(f"stream info {name}: {exc!r}") from exc
    state = msgspec.json.decode(reply.data).get("state")
    if state is None:
        raise StoreUnavailable(f"stream info {name}: {reply.data[:200]!r}")
    return StreamFacts(
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
        messages=int(state.get("messages", 0)),
        deleted=sorted(int(s) for s in state.get("deleted") or []),
    )


async def account_log(
    reader: LogReader,
    account: str,
    partitions: int,
    *,
    since: datetime | None = None,
    until_seq: int,
) -> AsyncIterator[list[StoredMessage]]:
    """The account's stored messages up to `until_seq` (from `since`), in stream order."""
    p = partition_of(account, partitions)
    span = Range(partition=p, subject=account_filter(p, account), since=since, until=until_seq)
    async for batch in reader.read(span):
        yield batch


async def partitions_of(js: JetStreamContext) -> int:
    """How many partitions the deployment was bootstrapped with."""
    kv = await js.key_value(META_BUCKET)
    try:
        entry = await kv.get("bootstrap")
    except nats.js.errors.KeyNotFoundError as exc:
        raise StoreUnavailable("the deployment was never bootstrapped") from exc
    return int(msgspec.json.decode(entry.value or b"{}").get("partitions", 0))


Progress = Callable[[int, int], None]


class RebuildReport(msgspec.Struct, frozen=True, kw_only=True):
    """How a rebuild from the log went."""

    events: int
    undecodable: int
    seconds: float
    events_per_second: float
    jobs: int
    sessions: int
    workspaces: int
    rejected: int


async def rebuild(
    reader: LogReader, read_model: ReadModel, partitions: int, progress: Progress | None = None
) -> RebuildReport:
    """Fold every partition from sequence 0 into `read_model` (the live tail's fold, fed by
    bulk reads); `progress(done, total)` after every batch."""
    extents = [await reader.extent(p) for p in range(partitions)]
    total = sum(messages for _, _, messages in extents)
    done = undecodable = 0
    started = time.perf_counter()
    for p, (_, last, _) in enumerate(extents):
        async for batch in reader.read(Range(partition=p, until=last)):
            undecodable += fold_batch(read_model.apply_batch, p, batch)
            done += len(batch)
            if progress is not None:
                progress(done, total)
    seconds = time.perf_counter() - started
    return RebuildReport(
        events=done,
        undecodable=undecodable,
        seconds=round(seconds, 3),
        events_per_second=round(done / seconds) if seconds > 0 else 0,
        jobs=sum(1 for _ in read_model.jobs()),
        sessions=len(read_model.sessions()),
        workspaces=len(read_model.workspaces()),
        rejected=len(read_model.rejected),
    )


def fold_batch(
    apply_batch: Callable[[Sequence[Recorded]], None], partition: int, batch: list[StoredMessage]
) -> int:
    """Decode and fold a batch; how many messages did not decode (for `chaser audit verify`)."""
    recs: list[Recorded] = []
    undecodable = 0
    for msg in batch:
        try:
            recs.append(recorded_from(partition, msg.seq, msg.data))
        except msgspec.DecodeError:
            undecodable += 1
            log.error("event_undecodable", partition=partition, seq=msg.seq, subject=msg.subject)
    apply_batch(recs)
    return undecodable


def bulk_catch_up(reader: LogReader) -> CatchUp:
    """A read model's start-up catch-up through bulk reads (`ReadModel.start(catch_up=...)`);
    if a bulk read fails, the partition's tail simply starts from where it got."""

    async def catch_up(
        partition: int, until: int, apply_batch: Callable[[Sequence[Recorded]], None]
    ) -> None:
        started, done = time.perf_counter(), 0
        try:
            async for batch in reader.read(Range(partition=partition, until=until)):
                fold_batch(apply_batch, partition, batch)
                done += len(batch)
        except StoreUnavailable as exc:
            log.warning("bulk_catch_up_failed", partition=partition, error=str(exc))
            return
        seconds = time.perf_counter() - started
        log.info("partition_caught_up", partition=partition, events=done, seconds=round(seconds, 3))

    return catch_up
