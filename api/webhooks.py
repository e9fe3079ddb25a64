"""Webhooks: `POST/GET /v1/webhooks`, `GET/DELETE /v1/webhooks/{id}`, and their deliveries."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.di import Provide

from api.auth import Principal
from api.problems import problem
from engine.errors import InvalidInput
from engine.service import validation_problem
from engine.webhooks import WebhookRegistry
from schemas.webhooks import CreateWebhookRequest, DeliveryPage, WebhookPage, WebhookView

_decode_create = msgspec.json.Decoder(CreateWebhookRequest).decode
MAX_DELIVERIES = 1000

# Why a URL is refused (scheme, address rules), or None; resolves names, so it is async.
UrlCheck = Callable[[str], Awaitable[str | None]]


@post("/v1/webhooks", status_code=201)
async def create_webhook(
    request: Request[Any, Any, Any], who: Principal, webhooks: WebhookRegistry, url_check: UrlCheck
) -> Response[bytes]:
    """Register a webhook; the answer holds its signing secret, shown this once."""
    try:
        body = _decode_create(await request.body())
    except msgspec.ValidationError as exc:
        raise validation_problem(exc, "") from exc
    except msgspec.DecodeError as exc:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
    refused = await url_check(body.url)
    if refused is not None:
        raise InvalidInput("url", refused)
    hook = await webhooks.create(who.account, body)
    return Response(
        msgspec.json.encode(WebhookView.of(hook, with_secret=True)),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/webhooks/{hook.id}"},
    )


@get("/v1/webhooks")
async def list_webhooks(who: Principal, webhooks: WebhookRegistry) -> WebhookPage:
    """The account's webhooks (without secrets)."""
    return WebhookPage(items=[WebhookView.of(h) for h in await webhooks.registered(who.account)])


@get("/v1/webhooks/{webhook_id:str}")
async def get_webhook(webhook_id: str, who: Principal, webhooks: WebhookRegistry) -> WebhookView:
    """One webhook of the account."""
    return WebhookView.of(await webhooks.get(who.account, webhook_id))


@delete("/v1/webhooks/{webhook_id:str}", status_code=204)
async def delete_webhook(webhook_id: str, who: Principal, webhooks: WebhookRegistry) -> None:
    """Stop a webhook's deliveries and remove it."""
    await webhooks.delete(who.account, webhook_id)


@get("/v1/webhooks/{webhook_id:str}/deliveries")
async def list_deliveries(
    webhook_id: str, who: Principal, webhooks: WebhookRegistry, limit: int = 100
) -> DeliveryPage:
    """The webhook's newest delivery attempts with the receiver's answers, newest first."""
    if not 1 <= limit <= MAX_DELIVERIES:
        raise InvalidInput("limit", f"an integer from 1 to {MAX_DELIVERIES}")
    return DeliveryPage(items=await webhooks.deliveries(who.account, webhook_id, limit))


def webhook_routes(registry: WebhookRegistry, url_check: UrlCheck) -> Router:
    """The webhook routes, bound to the deployment's registry and address rules."""
    return Router(
        path="/",
        route_handlers=[
            create_webhook,
            list_webhooks,
            get_webhook,
            delete_webhook,
            list_deliveries,
        ],
        dependencies={
            "webhooks": Provide(lambda: registry, use_cache=True, sync_to_thread=False),
            "url_check": Provide(lambda: url_check, use_cache=True, sync_to_thread=False),
        },
    )
