"""Webhook registrations and their delivery records, on JetStream.

Storage (account data, not events): each webhook is a key `<account>.<id>` of the KV bucket
CHASER_WEBHOOKS, holding its URL, filters and signing secret. Its delivery cursor is a durable
pull consumer `chaser_webhook_<id>` on the account's partition stream, filtered to the event
types it wants, with one message in flight (`max_ack_pending=1`): deliveries are strictly
ordered (so in order per job), survive restarts, and the delivery count JetStream keeps for
the message is the attempt number. Every attempt is recorded on the CHASER_DELIVERIES stream
(`chaser.deliveries.<account>.<id>`, the newest 1000 per webhook, 7 days).
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from engine.errors import InvalidInput, NotFound, StoreUnavailable
from engine.jetstream import _bucket, _stream  # bootstrap's create-or-adopt helpers
from engine.logread import LogReader, Range, read_all
from engine.subjects import aggregate_subject, partition_of, stream_name
from engine.subscribers import AGGREGATE_OF_TYPE, check_types
from schemas.kinds import KINDS
from schemas.webhooks import CreateWebhookRequest, DeliveryAttempt, Webhook

WEBHOOKS_BUCKET = "CHASER_WEBHOOKS"
DELIVERIES_STREAM = "CHASER_DELIVERIES"
DELIVERIES_KEPT = 1000
DELIVERIES_MAX_AGE = 7 * 86_400.0
MIN_ACK_WAIT = 15.0

decode_webhook = msgspec.json.Decoder(Webhook).decode
_decode_attempt = msgspec.json.Decoder(DeliveryAttempt).decode
NatsErrors = (nats.errors.Error, nats.js.errors.Error)


def ack_wait_for(timeout: float) -> float:
    """The consumer's ack wait: longer than any attempt (request time-out plus recording)."""
    return max(3 * timeout, MIN_ACK_WAIT)


def consumer_name(webhook_id: str) -> str:
    """The durable consumer holding a webhook's delivery position."""
    return f"chaser_webhook_{webhook_id}"


def delivery_subject(account: str, webhook_id: str) -> str:
    """Where a webhook's delivery attempts are recorded."""
    return f"chaser.deliveries.{account}.{webhook_id}"


def event_filters(partition: int, account: str, types: list[str]) -> list[str]:
    """One subject filter per wanted event type, in the account's partition."""
    return [
        aggregate_subject(partition, account, AGGREGATE_OF_TYPE[t], "*", t) for t in sorted(types)
    ]


async def ensure_storage(js: JetStreamContext, replicas: int) -> None:
    """Create the webhook bucket and the deliveries stream when missing (an existing one keeps
    the replication it was created with, as bootstrap does for the engine's own streams)."""
    await _bucket(js, WEBHOOKS_BUCKET, replicas)
    await _stream(
        js,
        StreamConfig(
            name=DELIVERIES_STREAM,
            subjects=["chaser.deliveries.>"],
            retention=RetentionPolicy.LIMITS,
            max_msgs_per_subject=DELIVERIES_KEPT,
            max_age=DELIVERIES_MAX_AGE,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    )


class WebhookRegistry:
    """Creates, lists and deletes an account's webhooks; records and lists their deliveries."""

    def __init__(
        self,
        js: JetStreamContext,
        partitions: int,
        *,
        replicas: int = 1,
        ack_wait: float = MIN_ACK_WAIT,
    ) -> None:
        self._js = js
        self._partitions = partitions
        self._replicas = replicas
        self._ack_wait = ack_wait
        self._reader = LogReader(js)

    async def bucket(self) -> KeyValue:
        """The CHASER_WEBHOOKS bucket."""
        try:
            return await self._js.key_value(WEBHOOKS_BUCKET)
        except NatsErrors as exc:
            raise StoreUnavailable(f"webhooks bucket: {exc!r}") from exc

    async def create(self, account: str, request: CreateWebhookRequest) -> Webhook:
        """Register a webhook: its consumer starts after the newest event stored now."""
        types = sorted(check_types(request.types, "types"))
        unknown = sorted(set(request.kinds or ()) - set(KINDS))
        if unknown:
            raise InvalidInput("kinds", f"unknown kind {unknown[0]!r}; see GET /v1/jobs/kinds")
        p = partition_of(account, self._partitions)
        hook = Webhook(
            id="wh_" + secrets.token_hex(8),
            account=account,
            url=request.url,
            types=types,
            kinds=sorted(set(request.kinds)) if request.kinds else None,
            secret="whsec_" + secrets.token_urlsafe(24),
            created_at=datetime.now(UTC),
            partition=p,
            start_seq=await self._reader.last_seq(p) + 1,
        )
        try:
            await self._js.add_consumer(stream_name(p), self._consumer_config(hook))
            kv = await self.bucket()
            await kv.create(f"{account}.{hook.id}", msgspec.json.encode(hook))
        except NatsErrors as exc:
            await self._drop_consumer(hook)
            raise StoreUnavailable(f"register webhook: {exc!r}") from exc
        return hook

    def _consumer_config(self, hook: Webhook) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=consumer_name(hook.id),
            description=f"webhook {hook.id} of {hook.account}",
            filter_subjects=event_filters(hook.partition, hook.account, hook.types),
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=hook.start_seq,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._ack_wait,
            max_ack_pending=1,
            max_deliver=-1,
            num_replicas=self._replicas,
        )

    async def _drop_consumer(self, hook: Webhook) -> None:
        try:
            await self._js.delete_consumer(stream_name(hook.partition), consumer_name(hook.id))
        except nats.js.errors.NotFoundError:
            pass
        except NatsErrors as exc:
            raise StoreUnavailable(f"delete webhook consumer: {exc!r}") from exc

    async def registered(self, account: str) -> list[Webhook]:
        """The account's webhooks, oldest first."""
        kv = await self.bucket()
        watcher = await kv.watch(f"{account}.*", ignore_deletes=True)
        hooks: list[Webhook] = []
        try:
            async for entry in watcher:
                if entry is None:  # the end of the current values
                    break
                if entry.value and entry.operation is None:
                    hooks.append(decode_webhook(entry.value))
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]
        return sorted(hooks, key=lambda h: h.created_at)

    async def get(self, account: str, webhook_id: str) -> Webhook:
        """One webhook of the account; NotFound for a missing or foreign id."""
        kv = await self.bucket()
        try:
            entry = await kv.get(f"{account}.{webhook_id}")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
            raise NotFound("webhook", webhook_id) from exc
        except (ValueError, *NatsErrors) as exc:  # a malformed key is a missing webhook
            raise NotFound("webhook", webhook_id) from exc
        if not entry.value:
            raise NotFound("webhook", webhook_id)
        return decode_webhook(entry.value)

    async def delete(self, account: str, webhook_id: str) -> None:
        """Stop deliveries and forget the webhook (its delivery records age out)."""
        hook = await self.get(account, webhook_id)
        await self._drop_consumer(hook)
        kv = await self.bucket()
        await kv.delete(f"{account}.{webhook_id}")

    async def record(self, hook: Webhook, attempt: DeliveryAttempt) -> None:
        """Append one delivery attempt to the webhook's record."""
        await self._js.publish(
            delivery_subject(hook.account, hook.id),
            msgspec.json.encode(attempt),
            stream=DELIVERIES_STREAM,
        )

    async def deliveries(self, account: str, webhook_id: str, limit: int) -> list[DeliveryAttempt]:
        """The newest `limit` delivery attempts of a webhook, newest first."""
        await self.get(account, webhook_id)
        span = Range(
            partition=0, stream=DELIVERIES_STREAM, subject=delivery_subject(account, webhook_id)
        )
        messages = await read_all(self._reader, span)
        return [_decode_attempt(m.data) for m in reversed(messages[-limit:])]
