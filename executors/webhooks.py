"""Webhook delivery: one loop per registered webhook, pulling its durable consumer.

Each event is POSTed as its subscriber JSON, signed, with its event id for deduplication. The
address rules are the browser's (`CHASER_WEBHOOK_ALLOW` in the form of CHASER_BROWSER_ALLOW),
applied at every delivery: the URL's literal address is checked before the request and every
name is resolved by a resolver that only hands out allowed addresses, on a fresh connection, so
the address checked is the address connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from typing import Any

import aiohttp
import msgspec
import nats.errors
import nats.js.errors
import structlog
from aiohttp.abc import AbstractResolver, ResolveResult
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from engine.projection import ReadModel
from engine.store import Recorded, recorded_from
from engine.subjects import stream_name
from engine.subscribers import job_id_of, kind_lookup, subscriber_json
from engine.webhook_rules import after_attempt, signature
from engine.webhooks import (
    WEBHOOKS_BUCKET,
    WebhookRegistry,
    consumer_name,
    decode_webhook,
    ensure_storage,
)
from executors.browser.errors import UrlNotAllowed
from executors.browser.policy import UrlPolicy, parse_allow
from schemas.webhooks import DeliveryAttempt, Webhook

log = structlog.get_logger("chaser.webhooks")

TIMEOUT_SECONDS = 10.0
RESPONSE_KEPT = 1024
FETCH_WAIT = 5.0
USER_AGENT = "chaser-webhooks/0.1"


def address_policy(entries: Iterable[str]) -> UrlPolicy:
    """The deployment's webhook address rules from `CHASER_WEBHOOK_ALLOW` entries."""
    return UrlPolicy(parse_allow(entries))


class _CheckedResolver(AbstractResolver):
    """Resolves a name and hands aiohttp only the address the policy allows."""

    def __init__(self, policy: UrlPolicy) -> None:
        self._policy = policy
        self._inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        chosen = self._policy.pick(host, [ip_address(r["host"]) for r in found])
        return [r for r in found if ip_address(r["host"]) == chosen][:1]

    async def close(self) -> None:
        await self._inner.close()


async def url_problem(policy: UrlPolicy, url: str) -> str | None:
    """Why a webhook URL is refused (scheme, or an address it resolves to), or None."""
    try:
        dest = policy.check_url(url)
        infos = await asyncio.get_running_loop().getaddrinfo(
            dest.host, dest.port, type=socket.SOCK_STREAM
        )
        policy.pick(dest.host, [ip_address(info[4][0]) for info in infos])
    except UrlNotAllowed as exc:
        return str(exc)
    except OSError as exc:
        return f"{url} does not resolve: {exc}"
    return None


class _Answer(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    status_code: int | None = None
    body: str | None = None
    error: str | None = None
    duration_ms: int = 0


class WebhookDeliverer:
    """Runs every webhook's delivery loop in this process (any number of processes may)."""

    def __init__(
        self,
        js: JetStreamContext,
        registry: WebhookRegistry,
        read_model: ReadModel,
        policy: UrlPolicy,
        *,
        replicas: int = 1,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._js = js
        self._registry = registry
        self._read = read_model
        self._policy = policy
        self._replicas = replicas
        self._timeout = timeout
        self._kind_of = kind_lookup(read_model.get)
        self._loops: dict[str, asyncio.Task[None]] = {}
        self._watcher: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Create storage if needed and follow the webhook bucket."""
        await ensure_storage(self._js, self._replicas)
        connector = aiohttp.TCPConnector(
            resolver=_CheckedResolver(self._policy), use_dns_cache=False, force_close=True
        )
        self._http = aiohttp.ClientSession(connector=connector, trust_env=False)
        self._watcher = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        """Stop every loop (an attempt in flight is redelivered later) and close HTTP."""
        tasks = [t for t in (self._watcher, *self._loops.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loops.clear()
        if self._http is not None:
            await self._http.close()

    async def _watch(self) -> None:
        """Follow the bucket: a loop per webhook; restarted after any failure."""
        while True:
            try:
                await self._follow_bucket()
            except Exception as exc:
                log.warning("webhook_watch_error", error=repr(exc))
            await asyncio.sleep(1.0)

    async def _follow_bucket(self) -> None:
        kv = await self._js.key_value(WEBHOOKS_BUCKET)
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    continue
                key = entry.key
                if entry.operation is None and entry.value:
                    hook = decode_webhook(entry.value)
                    if key not in self._loops:
                        self._loops[key] = asyncio.create_task(self._run(hook))
                elif key in self._loops:
                    self._loops.pop(key).cancel()
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]

    async def _run(self, hook: Webhook) -> None:
        """Deliver a webhook's events one at a time, for as long as it exists."""
        bound = structlog.contextvars.bound_contextvars(account=hook.account, webhook_id=hook.id)
        with bound:
            log.info("webhook_loop_started")
            while True:
                try:
                    sub = await self._js.pull_subscribe_bind(
                        durable=consumer_name(hook.id), stream=stream_name(hook.partition)
                    )
                    await self._pull(hook, sub)
                except nats.js.errors.NotFoundError:
                    log.info("webhook_consumer_gone")
                    return
                except Exception as exc:  # the loop must outlive any one failure
                    log.warning("webhook_loop_error", error=repr(exc))
                    await asyncio.sleep(1.0)

    async def _pull(self, hook: Webhook, sub: JetStreamContext.PullSubscription) -> None:
        try:
            while True:
                try:
                    msgs = await sub.fetch(1, timeout=FETCH_WAIT)
                except nats.errors.TimeoutError:
                    continue
                for msg in msgs:
                    await self.handle(hook, msg)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()

    async def handle(self, hook: Webhook, msg: Msg) -> None:
        """One delivery attempt of one message, and its ack, nak-with-delay or term."""
        meta = msg.metadata
        try:
            rec = recorded_from(hook.partition, meta.sequence.stream, msg.data)
        except msgspec.DecodeError:
            log.error("webhook_event_undecodable", seq=meta.sequence.stream)
            await msg.term()
            return
        if hook.kinds is not None and not await self._kind_matches(hook, rec):
            await msg.ack()
            return
        attempt = meta.num_delivered
        answer = await self.post(hook, rec, attempt)
        decision = after_attempt(attempt=attempt, ok=answer.ok)
        retry_at = None
        if decision.delay is not None:
            retry_at = datetime.now(UTC) + timedelta(seconds=decision.delay)
        await self._registry.record(
            hook, _attempt(hook, rec, attempt, answer, decision.outcome, retry_at)
        )
        log.info(
            "webhook_delivery",
            seq=rec.seq,
            attempt=attempt,
            outcome=decision.outcome,
            status_code=answer.status_code,
            error=answer.error,
        )
        if decision.outcome == "delivered":
            await msg.ack_sync()
        elif decision.outcome == "retry":
            await msg.nak(delay=decision.delay)
        else:
            await msg.term()

    async def _kind_matches(self, hook: Webhook, rec: Recorded) -> bool:
        await self._read.wait_for(rec.partition, rec.seq, 5.0)
        return self._kind_of(rec.event) in (hook.kinds or ())

    async def post(self, hook: Webhook, rec: Recorded, attempt: int) -> _Answer:
        """POST one event to the webhook's URL and say how the receiver answered."""
        assert self._http is not None, "start() first"
        body = subscriber_json(rec.data, rec.seq)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "X-Chaser-Signature": signature(hook.secret, body, int(time.time())),
            "X-Chaser-Event-Id": rec.event.event_id,
            "X-Chaser-Event-Type": type(rec.event).__name__,
            "X-Chaser-Webhook-Id": hook.id,
            "X-Chaser-Delivery-Attempt": str(attempt),
        }
        started = time.monotonic()
        try:
            self._policy.check_url(hook.url)
            async with self._http.post(
                hook.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout),
            ) as response:
                text = (await response.content.read(RESPONSE_KEPT)).decode(errors="replace")
                return _Answer(
                    ok=200 <= response.status < 300,
                    status_code=response.status,
                    body=text,
                    duration_ms=_ms(started),
                )
        except UrlNotAllowed as exc:
            return _Answer(ok=False, error=f"url_not_allowed: {exc}", duration_ms=_ms(started))
        except TimeoutError:
            return _Answer(
                ok=False, error=f"timed out after {self._timeout:g}s", duration_ms=_ms(started)
            )
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            return _Answer(ok=False, error=f"{type(exc).__name__}: {exc}", duration_ms=_ms(started))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _attempt(
    hook: Webhook,
    rec: Recorded,
    attempt: int,
    answer: _Answer,
    outcome: Any,
    retry_at: datetime | None,
) -> DeliveryAttempt:
    return DeliveryAttempt(
        webhook_id=hook.id,
        event_id=rec.event.event_id,
        event_type=type(rec.event).__name__,
        job_id=job_id_of(rec.event),
        seq=rec.seq,
        attempt=attempt,
        at=datetime.now(UTC),
        outcome=outcome,
        status_code=answer.status_code,
        response_body=answer.body,
        error=answer.error,
        duration_ms=answer.duration_ms,
        next_attempt_at=retry_at,
    )
