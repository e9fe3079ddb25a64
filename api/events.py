"""Subscribers: `GET /v1/events` and `GET /v1/jobs/{id}/events` (Server-Sent Events) and the
same stream over WebSocket, `/v1/events/ws`.

Every event is the stored event JSON plus `seq`, its stream sequence, which is also the SSE
`id`: resume with `Last-Event-ID` (or `?after=SEQ`) and the missed events come from the log.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import structlog
from litestar import Request, Router, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import WebSocketDisconnect
from litestar.response import Stream

from api.auth import Principal, principal
from api.problems import ApiProblem
from engine.errors import InvalidInput, NotFound
from engine.feed import EventFeed, FeedClosed, FeedEnded, FeedOverflow
from engine.service import JobService
from engine.store import Recorded
from engine.subscribers import EventFilter, check_types, ends_job, subscriber_json

log = structlog.get_logger("chaser.api.events")

KEEPALIVE_SECONDS = 15.0
RETRY_MS = 1000
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
FEED_PARAMS = frozenset({"job_id", "kind", "type", "after"})
JOB_PARAMS = frozenset({"type", "after"})


def _values(params: Mapping[str, list[str]], name: str) -> frozenset[str] | None:
    values = frozenset(v for raw in params.get(name, []) for v in raw.split(",") if v)
    return values or None


def _position(text: str, field: str) -> int:
    if not text.strip().isdigit():
        raise InvalidInput(field, "a stream sequence: a whole number from 0")
    return int(text)


def _params(query: Any, allowed: frozenset[str]) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {k: query.getall(k) for k in query}
    unknown = set(params) - allowed
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "unknown query parameter")
    return params


def _after(params: Mapping[str, list[str]], headers: Mapping[str, str]) -> int | None:
    """`Last-Event-ID` (what a reconnecting EventSource sends) wins over `?after=`."""
    resumed = headers.get("last-event-id")
    if resumed:
        return _position(resumed, "Last-Event-ID")
    if params.get("after"):
        return _position(params["after"][-1], "after")
    return None


def feed_filter(params: Mapping[str, list[str]], job_id: str | None = None) -> EventFilter:
    """The filter a subscriber's query string asks for."""
    types = _values(params, "type")
    jobs = _values(params, "job_id")
    if jobs is not None and len(jobs) > 1:
        raise InvalidInput("job_id", "one job id")
    return EventFilter(
        job_id=job_id or (next(iter(jobs)) if jobs else None),
        kinds=_values(params, "kind"),
        types=check_types(types) if types is not None else None,
    )


def sse_frame(rec: Recorded) -> bytes:
    """One SSE message: the sequence as id, the event type as event name, the JSON as data."""
    data = subscriber_json(rec.data, rec.seq)
    if b"\n" in data:  # stored JSON is compact, but never trust a line break into the frame
        data = data.replace(b"\n", b"\ndata: ")
    name = type(rec.event).__name__.encode()
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (rec.seq, name, data)


async def _sse(batches: AsyncIterator[list[Recorded]]) -> AsyncIterator[bytes]:
    yield b"retry: %d\n: chaser events\n\n" % RETRY_MS
    try:
        async for batch in batches:
            yield b"".join(sse_frame(rec) for rec in batch) if batch else b": keepalive\n\n"
    except FeedOverflow:
        log.warning("event_feed_overflow")
    except FeedEnded:
        pass  # shutting down: the client resumes with Last-Event-ID


async def _until_terminal(
    feed: EventFeed, who: Principal, flt: EventFilter, batches: AsyncIterator[list[Recorded]]
) -> AsyncIterator[list[Recorded]]:
    """The job's events that pass `flt`, ending after the one that leaves the job terminal
    (`batches` holds every event of the job, so the end is seen whatever `flt` keeps)."""
    assert flt.job_id is not None
    async for batch in batches:
        kept = [rec for rec in batch if flt.matches(rec.event, feed.kind_of)]
        if kept or not batch:  # an empty batch is the feed's keep-alive
            yield kept
        if batch and ends_job(feed.read_model.get(who.account, flt.job_id), batch[-1].seq):
            return


def _stream(body: AsyncIterator[bytes]) -> Stream:
    return Stream(body, media_type="text/event-stream", headers=SSE_HEADERS)


@get("/v1/events")
async def events(request: Request[Any, Any, Any], who: Principal, feed: EventFeed) -> Stream:
    """The account's events as they are appended (SSE); resumable with `Last-Event-ID`."""
    params = _params(request.query_params, FEED_PARAMS)
    flt = feed_filter(params)
    after = _after(params, request.headers)
    # "From now on" is from this request, not from when the body starts streaming.
    start = feed.position(who.account) if after is None else after
    return _stream(_sse(feed.follow(who.account, flt, start, idle=KEEPALIVE_SECONDS)))


@get("/v1/jobs/{job_id:str}/events")
async def job_events(
    job_id: str, request: Request[Any, Any, Any], state: State, who: Principal, feed: EventFeed
) -> Stream:
    """One job's events from its creation (or `Last-Event-ID`), ending when it is terminal."""
    params = _params(request.query_params, JOB_PARAMS)
    flt = feed_filter(params, job_id)
    after = _after(params, request.headers) or 0
    service: JobService = state.deps.service
    await service.catch_up(who.account)
    job = feed.read_model.get(who.account, job_id)
    if job is None:
        raise NotFound("job", job_id)
    if ends_job(job, after):
        return _stream(_sse(_nothing()))
    follow = feed.follow(who.account, EventFilter(job_id=job_id), after, idle=KEEPALIVE_SECONDS)
    return _stream(_sse(_until_terminal(feed, who, flt, follow)))


async def _nothing() -> AsyncIterator[list[Recorded]]:
    return
    yield  # an async generator that ends at once


@websocket("/v1/events/ws")
async def events_ws(socket: WebSocket[Any, Any, Any], state: State, feed: EventFeed) -> None:
    """The account's events as JSON text messages, with the same filters and `after`."""
    try:
        who = await principal(cast(Request[Any, Any, Any], socket), state)
        params = _params(socket.query_params, FEED_PARAMS)
        flt = feed_filter(params)
        after = _after(params, socket.headers)
    except (ApiProblem, InvalidInput) as exc:
        # Accepted, then closed: a refused handshake would not tell the client why.
        code, reason = (
            (4000 + exc.status, exc.detail) if isinstance(exc, ApiProblem) else (4422, str(exc))
        )
        await socket.accept()
        await socket.close(code=code, reason=reason[:120])
        return
    start = feed.position(who.account) if after is None else after
    await socket.accept()
    sender = asyncio.create_task(_send_events(socket, feed.follow(who.account, flt, start)))
    listener = asyncio.create_task(_until_closed(socket))
    done, _ = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
    for task in (sender, listener):
        task.cancel()
    results = await asyncio.gather(sender, listener, return_exceptions=True)
    if sender in done and isinstance(results[0], FeedEnded):
        code, reason = _WS_ENDINGS[type(results[0])]
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await socket.close(code=code, reason=reason)


# How a WebSocket feed that ends is closed: 4008 (fell behind) or 1001 (going away); either
# way the client reconnects with `?after=<the last seq it got>`.
_WS_ENDINGS: dict[type[BaseException], tuple[int, str]] = {
    FeedOverflow: (4008, "fell behind; reconnect with ?after=<last seq>"),
    FeedClosed: (1001, "server shutting down; reconnect with ?after=<last seq>"),
}


async def _send_events(
    socket: WebSocket[Any, Any, Any], batches: AsyncIterator[list[Recorded]]
) -> None:
    async for batch in batches:
        for rec in batch:
            await socket.send_data(subscriber_json(rec.data, rec.seq).decode(), mode="text")


async def _until_closed(socket: WebSocket[Any, Any, Any]) -> None:
    """Read (and ignore) client messages until the client goes away."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            await socket.receive_data(mode="text")


def event_routes(feed: EventFeed) -> Router:
    """The subscriber routes, bound to a process's event feed."""
    return Router(
        path="/",
        route_handlers=[events, job_events, events_ws],
        dependencies={"feed": Provide(lambda: feed, use_cache=True, sync_to_thread=False)},
    )
