"""The JetStream event store and the bootstrap of every stream and bucket the engine uses."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from engine.errors import ConcurrencyConflict, StoreUnavailable
from engine.settings import Settings
from engine.store import Handler, Recorded, Skip, recorded_from
from engine.subjects import (
    CONTROL_STREAM,
    KEYS_BUCKET,
    LOG_STREAM,
    META_BUCKET,
    WORK_STREAM,
    aggregate_filter,
    aggregate_subject,
    partition_of,
    partition_subjects,
    stream_name,
)
from schemas.events import encode_event, event_type
from schemas.log import AnyEvent, aggregate_of

log = structlog.get_logger("chaser.store")

WRONG_LAST_SEQUENCE = 10071
DAY = 86_400.0
APPEND_TRIES = 5


class Bootstrap(msgspec.Struct, frozen=True, kw_only=True):
    """Deployment facts fixed at first start and kept in the metadata bucket."""

    partitions: int


async def bootstrap(js: JetStreamContext, settings: Settings) -> Bootstrap:
    """Create (or adopt) the metadata bucket, event streams, work queue and log stream."""
    replicas = settings.effective_replicas
    meta = await _bucket(js, META_BUCKET, replicas)
    boot = Bootstrap(partitions=settings.partitions)
    try:
        await meta.create("bootstrap", msgspec.json.encode(boot))
    except nats.js.errors.KeyWrongLastSequenceError:
        entry = await meta.get("bootstrap")
        assert entry.value is not None
        boot = msgspec.json.decode(entry.value, type=Bootstrap)
    await _bucket(js, KEYS_BUCKET, replicas)
    for p in range(boot.partitions):
        await _stream(
            js,
            StreamConfig(
                name=stream_name(p),
                subjects=[partition_subjects(p)],
                retention=RetentionPolicy.LIMITS,
                max_age=settings.event_max_age_days * DAY,
                max_bytes=settings.event_max_bytes,
                storage=StorageType.FILE,
                num_replicas=replicas,
                duplicate_window=120.0,
                allow_direct=True,
                discard=DiscardPolicy.OLD,
            ),
        )
    await _stream(
        js,
        StreamConfig(
            name=WORK_STREAM,
            subjects=["chaser.work.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=600.0,
        ),
    )
    await _stream(
        js,
        StreamConfig(
            name=CONTROL_STREAM,
            subjects=["chaser.control.>"],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=600.0,
        ),
    )
    await _stream(
        js,
        StreamConfig(
            name=LOG_STREAM,
            subjects=["chaser.logs.>"],
            retention=RetentionPolicy.LIMITS,
            max_age=settings.log_max_age_days * DAY,
            storage=StorageType.FILE,
            num_replicas=replicas,
            allow_direct=True,
        ),
    )
    return boot


async def _bucket(js: JetStreamContext, name: str, replicas: int) -> KeyValue:
    try:
        return await js.key_value(name)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(bucket=name, history=1, replicas=replicas, storage=StorageType.FILE)
        )


async def _stream(js: JetStreamContext, config: StreamConfig) -> None:
    assert config.name is not None
    try:
        existing = await js.stream_info(config.name)
    except nats.js.errors.NotFoundError:
        await js.add_stream(config)
        return
    # Exists: keep its replication (fixed when the deployment was bootstrapped), update limits.
    config.num_replicas = existing.config.num_replicas
    await js.update_stream(config)


class _NatsTail:
    def __init__(self, task: asyncio.Task[None]) -> None:
        self._task = task

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


class _PartitionReader:
    """Reads a partition in order through an ephemeral pull consumer, in batches.

    The consumer is re-created from the last applied sequence whenever it fails or vanishes
    (an ephemeral consumer lives on one node and dies with it), so a tail survives a node loss.
    """

    BATCH = 512
    CHECK_EVERY = 5.0

    def __init__(
        self,
        js: JetStreamContext,
        partition: int,
        after: int,
        handler: Handler,
        on_skip: Skip | None = None,
    ):
        self._js = js
        self._on_skip = on_skip
        self._partition = partition
        self._position = after
        self._handler = handler
        self._sub: JetStreamContext.PullSubscription | None = None

    async def open(self) -> None:
        """Create the consumer starting just after the last applied sequence."""
        await self._close()
        self._sub = await self._js.pull_subscribe(
            partition_subjects(self._partition),
            stream=stream_name(self._partition),
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
                opt_start_seq=self._position + 1,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=60.0,
                mem_storage=True,
                num_replicas=1,
            ),
        )

    async def _close(self) -> None:
        if self._sub is not None:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self._sub.unsubscribe()
            self._sub = None

    async def run(self) -> None:
        """Deliver forever; on trouble, wait a little and re-open where we stopped."""
        try:
            while True:
                try:
                    await self._pump()
                except (TimeoutError, nats.errors.Error, nats.js.errors.Error) as exc:
                    log.warning("tail_reopen", partition=self._partition, error=repr(exc))
                await asyncio.sleep(0.25)
                with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                    await self.open()
        finally:
            await self._close()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        checked = loop.time()
        while True:
            assert self._sub is not None
            try:
                msgs = await self._sub.fetch(self.BATCH, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                if loop.time() - checked > self.CHECK_EVERY:
                    # Idle, or stuck? An ephemeral consumer on a lost node is gone (its info
                    # request fails), or says it has messages it does not deliver.
                    info = await self._sub.consumer_info()
                    if info.num_pending:
                        raise StoreUnavailable(
                            f"tail of partition {self._partition} stalled"
                        ) from None
                    checked = loop.time()
                continue
            checked = loop.time()
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq <= self._position:
                    continue
                try:
                    rec = recorded_from(self._partition, seq, msg.data)
                except msgspec.DecodeError as exc:
                    # Never stall a tail on one bad message: skip it, and say so (the
                    # auditor reports it with its sequence).
                    log.error("event_undecodable", partition=self._partition, seq=seq)
                    if self._on_skip is not None:
                        self._on_skip(self._partition, seq, str(exc))
                else:
                    await self._handler(rec)
                self._position = seq


class JetStreamEventStore:
    """Events on JetStream: one stream per partition, one subject per job event."""

    def __init__(self, js: JetStreamContext, partitions: int, *, timeout: float = 5.0) -> None:
        self._js = js
        self._partitions = partitions
        self._timeout = timeout

    @property
    def partitions(self) -> int:
        return self._partitions

    async def append(self, event: AnyEvent, *, expected_seq: int) -> Recorded:
        p = partition_of(event.account, self._partitions)
        data = encode_event(event)
        aggregate, ident = aggregate_of(event)
        subject = aggregate_subject(p, event.account, aggregate, ident, event_type(event))
        scope = aggregate_filter(p, event.account, aggregate, ident)
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(expected_seq),
            "Nats-Expected-Last-Subject-Sequence-Subject": scope,
            "Nats-Msg-Id": event.event_id,
        }
        retried = False
        for attempt in range(APPEND_TRIES):
            try:
                ack = await self._js.publish(
                    subject, data, timeout=self._timeout, headers=headers, stream=stream_name(p)
                )
                return recorded_from(p, ack.seq, data)
            except nats.js.errors.APIError as exc:
                if exc.err_code == WRONG_LAST_SEQUENCE:
                    landed = await self._landed(p, scope, event.event_id, data) if retried else None
                    if landed is not None:
                        return landed
                    raise ConcurrencyConflict(scope, expected_seq) from exc
                if not _transient(exc) or attempt + 1 == APPEND_TRIES:
                    raise StoreUnavailable(f"append to {subject}: {exc}") from exc
            except nats.errors.Error as exc:
                if attempt + 1 == APPEND_TRIES:
                    raise StoreUnavailable(f"append to {subject}: {exc!r}") from exc
            retried = True
            await asyncio.sleep(0.2 * (attempt + 1))
        raise StoreUnavailable(f"append to {subject}: gave up")

    async def _landed(self, p: int, scope: str, event_id: str, data: bytes) -> Recorded | None:
        """After a timed-out try, tell whether our own earlier publish is the job's newest."""
        try:
            last = await self._js.get_last_msg(stream_name(p), scope, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        if last.headers and last.headers.get("Nats-Msg-Id") == event_id and last.seq:
            return recorded_from(p, last.seq, data)
        return None

    async def history(self, account: str, ident: str, aggregate: str = "job") -> list[Recorded]:
        p = partition_of(account, self._partitions)
        scope = aggregate_filter(p, account, aggregate, ident)
        out: list[Recorded] = []
        seq = 1
        while True:
            try:
                msg = await self._js.get_msg(
                    stream_name(p), seq=seq, subject=scope, next=True, direct=True
                )
            except nats.js.errors.NotFoundError:
                return out
            except (nats.errors.Error, nats.js.errors.APIError) as exc:
                raise StoreUnavailable(f"read {scope}: {exc!r}") from exc
            assert msg.seq is not None and msg.data is not None
            out.append(recorded_from(p, msg.seq, msg.data))
            seq = msg.seq + 1

    async def last_seq(self, partition: int) -> int:
        info = await self._js.stream_info(stream_name(partition))
        return int(info.state.last_seq)

    async def tail(
        self, partition: int, after_seq: int, handler: Handler, on_skip: Skip | None = None
    ) -> _NatsTail:
        reader = _PartitionReader(self._js, partition, after_seq, handler, on_skip)
        await reader.open()
        return _NatsTail(asyncio.create_task(reader.run(), name=f"tail-{partition}"))

    async def raw(self, partition: int, seq: int) -> dict[str, Any] | None:
        """One stored message by sequence, for auditors; None when it is gone."""
        try:
            msg = await self._js.get_msg(stream_name(partition), seq=seq, direct=True)
        except nats.js.errors.NotFoundError:
            return None
        return {"seq": msg.seq, "subject": msg.subject, "data": msg.data}


def _transient(exc: nats.js.errors.APIError) -> bool:
    return exc.code in (503, 504) or exc.err_code in (10008, 10077)


async def connect(url: str, *, name: str = "chaser") -> NATS:
    """Connect with reconnects that outlast a node restart in a cluster."""
    nc = NATS()
    await nc.connect(
        servers=[u.strip() for u in url.split(",")],
        name=name,
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
        drain_timeout=5,
    )
    return nc
