"""The subscriber side of a `chaser serve` process: the SSE/WebSocket event feed, the webhook
registry with its routes, and (in processes with the dispatcher role) webhook delivery."""

from __future__ import annotations

from functools import partial

from litestar import Router
from nats.js import JetStreamContext

from api.events import event_routes
from api.webhooks import webhook_routes
from engine.feed import EventFeed
from engine.logread import LogReader
from engine.projection import ReadModel
from engine.settings import Settings
from engine.webhooks import WebhookRegistry, ack_wait_for, ensure_storage
from executors.webhooks import WebhookDeliverer, address_policy, url_problem


class Subscribers:
    """Event feed, webhook registry and (with the dispatcher role) webhook deliverer."""

    def __init__(
        self, js: JetStreamContext, read_model: ReadModel, settings: Settings, partitions: int
    ) -> None:
        self._js = js
        self._replicas = settings.effective_replicas
        self.feed = EventFeed(read_model, LogReader(js))
        self.registry = WebhookRegistry(
            js,
            partitions,
            replicas=self._replicas,
            ack_wait=ack_wait_for(settings.webhook_timeout_seconds),
        )
        self.policy = address_policy(settings.webhook_allow)
        self.deliverer: WebhookDeliverer | None = None
        if "dispatcher" in settings.roles:
            self.deliverer = WebhookDeliverer(
                js,
                self.registry,
                read_model,
                self.policy,
                replicas=self._replicas,
                timeout=settings.webhook_timeout_seconds,
            )

    async def start(self) -> None:
        """Create the webhook storage when missing and start delivering."""
        await ensure_storage(self._js, self._replicas)
        if self.deliverer is not None:
            await self.deliverer.start()

    def routes(self) -> list[Router]:
        """`/v1/events`, `/v1/jobs/{id}/events`, `/v1/events/ws` and `/v1/webhooks...`."""
        return [
            event_routes(self.feed),
            webhook_routes(self.registry, partial(url_problem, self.policy)),
        ]

    def close_feeds(self) -> None:
        """End every live SSE and WebSocket stream (before the HTTP server drains)."""
        self.feed.close()

    async def stop(self) -> None:
        """Stop delivering (attempts in flight are redelivered later)."""
        if self.deliverer is not None:
            await self.deliverer.stop()
