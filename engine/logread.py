"""Bulk reads of the event log: a range of one partition, optionally filtered by subject.

Replays (SSE resume, audit, export, projection rebuild) read through an ephemeral push
consumer with no acks. Where the deployment's connection allows it the messages are parsed
straight off the wire (`engine.wire`), otherwise through nats-py's ordered consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from datetime import datetime

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from engine.errors import StoreUnavailable
from engine.subjects import partition_subjects, stream_name
from engine.wire import Delivery, Endpoint, WireError, WireUnsupported, open_wire
from schemas.audit import StoredMessage

log = structlog.get_logger("chaser.logread")

HEARTBEAT = 2.0
INACTIVE = 30.0
FALLBACK_BATCH = 512
STALL_SECONDS = 15.0


class Range(msgspec.Struct, frozen=True, kw_only=True):
    """What to read of one partition: messages after `after` (or from `since`) up to `until`.

    `stream` reads another stream than the partition's (the partition is then only a label).
    """

    partition: int
    subject: str | None = None
    after: int = 0
    until: int | None = None
    since: datetime | None = None
    stream: str | None = None

    @property
    def stream_name(self) -> str:
        """The stream this range is read from."""
        return self.stream or stream_name(self.partition)

    def config(self, deliver_subject: str) -> ConsumerConfig:
        """The ephemeral push consumer that delivers this range."""
        by_time = self.since is not None
        policy = DeliverPolicy.BY_START_TIME if by_time else DeliverPolicy.BY_START_SEQUENCE
        whole = None if self.stream else partition_subjects(self.partition)
        return ConsumerConfig(
            deliver_subject=deliver_subject,
            ack_policy=AckPolicy.NONE,
            deliver_policy=policy,
            opt_start_seq=None if by_time else self.after + 1,
            opt_start_time=self.since,
            filter_subject=self.subject or whole,
            flow_control=True,
            idle_heartbeat=HEARTBEAT,
            inactive_threshold=INACTIVE,
            mem_storage=True,
            num_replicas=1,
        )


def endpoint_of(nc: NATS) -> Endpoint | None:
    """The raw endpoint of a connected client, or None when its auth needs nats-py."""
    url = nc.connected_url
    options = nc.options
    if url is None or options.get("user_credentials") or options.get("nkeys_seed"):
        return None
    if options.get("signature_cb") is not None:
        return None
    endpoint = Endpoint.parse(url.geturl(), token=options.get("token"))
    user, password = options.get("user"), options.get("password")
    if user and endpoint.user is None:
        endpoint = Endpoint(
            host=endpoint.host,
            port=endpoint.port,
            user=user,
            password=password,
            token=endpoint.token,
            tls=endpoint.tls,
        )
    return endpoint


class LogReader:
    """Reads ranges of the event streams in batches of StoredMessage, in stream order."""

    def __init__(self, js: JetStreamContext, *, raw: bool = True) -> None:
        self._js = js
        nc: NATS = js._nc  # the context's own connection; nats-py exposes no public accessor
        self._endpoint = endpoint_of(nc) if raw else None

    async def last_seq(self, partition: int) -> int:
        """The newest sequence of a partition."""
        return (await self.extent(partition))[1]

    async def extent(self, partition: int) -> tuple[int, int, int]:
        """A partition's first and last sequence, and how many messages it holds."""
        try:
            info = await self._js.stream_info(stream_name(partition))
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"stream info {stream_name(partition)}: {exc!r}") from exc
        state = info.state
        return int(state.first_seq), int(state.last_seq), int(state.messages)

    async def read(self, span: Range) -> AsyncIterator[list[StoredMessage]]:
        """Every message of the range in batches; ends at `until` or at the stream's end."""
        if span.until is not None and span.until <= span.after:
            return
        if self._endpoint is not None:
            try:
                async for batch in self._read_raw(span, self._endpoint):
                    yield batch
                return
            except WireUnsupported as exc:
                log.info("bulk_read_fallback", reason=str(exc))
                self._endpoint = None
        async for batch in self._read_ordered(span):
            yield batch

    async def _consumer(self, span: Range, inbox: str) -> tuple[str, int]:
        try:
            info = await self._js.add_consumer(span.stream_name, span.config(inbox))
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"read {span.stream_name}: {exc!r}") from exc
        return info.name, int(info.num_pending or 0)

    async def _drop(self, span: Range, name: str) -> None:
        with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
            await self._js.delete_consumer(span.stream_name, name)

    async def _read_raw(
        self, span: Range, endpoint: Endpoint
    ) -> AsyncIterator[list[StoredMessage]]:
        try:
            wire = await open_wire(endpoint)
        except WireUnsupported:
            raise
        except WireError as exc:
            raise StoreUnavailable(str(exc)) from exc
        inbox = f"_INBOX.chaser.{secrets.token_hex(8)}"
        name = ""
        try:
            await wire.subscribe(inbox)
            name, pending = await self._consumer(span, inbox)
            watch = _Stall(span)
            while pending:
                deliveries = await asyncio.wait_for(wire.batch(), STALL_SECONDS)
                batch, pending = _keep(span, watch.check(deliveries), pending)
                if batch:
                    yield batch
        except (WireError, TimeoutError) as exc:
            raise StoreUnavailable(f"read {span.stream_name}: {exc}") from exc
        finally:
            if name:
                await self._drop(span, name)
            await wire.close()

    async def _read_ordered(self, span: Range) -> AsyncIterator[list[StoredMessage]]:
        """The portable path: nats-py's push subscription on the same consumer shape."""
        nc: NATS = self._js._nc
        queue: asyncio.Queue[Msg] = asyncio.Queue()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=queue.put)
        name = ""
        try:
            name, pending = await self._consumer(span, inbox)
            watch = _Stall(span)
            while pending:
                deliveries = await asyncio.wait_for(_drain(nc, queue), STALL_SECONDS)
                batch, pending = _keep(span, watch.check(deliveries), pending)
                if batch:
                    yield batch
        except TimeoutError as exc:
            raise StoreUnavailable(f"read {span.stream_name}: no answer") from exc
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
            if name:
                await self._drop(span, name)


class _Stall:
    """Notices a read that only gets heartbeats (its consumer vanished, say) and ends it."""

    def __init__(self, span: Range) -> None:
        self._span = span
        self._last = time.monotonic()

    def check(self, deliveries: list[Delivery]) -> list[Delivery]:
        now = time.monotonic()
        if deliveries:
            self._last = now
        elif now - self._last > STALL_SECONDS:
            raise StoreUnavailable(f"read {self._span.stream_name}: stalled")
        return deliveries


async def _drain(nc: NATS, queue: asyncio.Queue[Msg]) -> list[Delivery]:
    """Up to FALLBACK_BATCH data messages; flow-control requests are answered on the way."""
    out: list[Delivery] = []
    msg = await queue.get()
    while True:
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            meta = msg.metadata
            out.append((meta.sequence.stream, meta.num_pending, msg.subject, msg.data))
        elif msg.reply and msg.headers and not msg.data:
            await nc.publish(msg.reply, b"")
        if len(out) >= FALLBACK_BATCH or queue.empty():
            return out
        msg = queue.get_nowait()


def _keep(span: Range, deliveries: list[Delivery], pending: int) -> tuple[list[StoredMessage], int]:
    """The deliveries inside the range, and how many remain to read (0: the range is done)."""
    p = span.partition
    until = span.until
    out = [StoredMessage(p, seq, subject, data) for seq, _, subject, data in deliveries]
    if not deliveries:
        return out, pending
    last_seq, left = deliveries[-1][0], deliveries[-1][1]
    if until is not None and last_seq >= until:
        return [m for m in out if m.seq <= until], 0
    return out, left


async def read_all(reader: LogReader, span: Range) -> list[StoredMessage]:
    """A whole range as one list (for ranges known to be small, or for tests)."""
    out: list[StoredMessage] = []
    async for batch in reader.read(span):
        out.extend(batch)
    return out
