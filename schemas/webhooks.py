"""Webhooks: the request that registers one, what is stored, and each delivery attempt."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

Url = Annotated[str, msgspec.Meta(min_length=8, max_length=2048)]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class CreateWebhookRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /v1/webhooks`."""

    url: Url
    types: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=64)]
    kinds: Annotated[list[Name], msgspec.Meta(min_length=1, max_length=64)] | None = None


class Webhook(msgspec.Struct, frozen=True, kw_only=True):
    """A registered webhook as kept in the CHASER_WEBHOOKS bucket (with its signing secret)."""

    id: str
    account: str
    url: str
    types: list[str]
    kinds: list[str] | None
    secret: str
    created_at: datetime
    partition: int
    start_seq: int


class WebhookView(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A webhook as the API shows it; `secret` only in the answer to its creation."""

    id: str
    url: str
    types: list[str]
    kinds: list[str] | None
    created_at: datetime
    secret: str | None = None

    @classmethod
    def of(cls, hook: Webhook, *, with_secret: bool = False) -> WebhookView:
        """The public fields of a stored webhook."""
        return cls(
            id=hook.id,
            url=hook.url,
            types=hook.types,
            kinds=hook.kinds,
            created_at=hook.created_at,
            secret=hook.secret if with_secret else None,
        )


class WebhookPage(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/webhooks`."""

    items: list[WebhookView]


Outcome = Literal["delivered", "retry", "gave_up", "skipped"]


class DeliveryAttempt(msgspec.Struct, frozen=True, kw_only=True):
    """One attempt to deliver one event to one webhook, and what the receiver answered."""

    webhook_id: str
    event_id: str
    event_type: str
    job_id: str | None
    seq: int
    attempt: int
    at: datetime
    outcome: Outcome
    status_code: int | None = None
    response_body: str | None = None
    error: str | None = None
    duration_ms: int = 0
    next_attempt_at: datetime | None = None


class DeliveryPage(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/webhooks/{id}/deliveries`: newest first."""

    items: list[DeliveryAttempt]
