"""`GET /v1/jobs/{id}/logs`: a job's full output from the log stream, streamed.

Query: `attempt` (default: the job's current one), `follow` (`true`: keep streaming while the
attempt runs, end when it is over), `channel` (`stdout`, `stderr`, `system`; comma-separated,
default all) and `format`: `ndjson` (default; one JSON object per chunk: `seq`, `attempt`,
`channel` and `data`, or `data_b64` for bytes that are not UTF-8) or `text` (the raw bytes).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar import Request, get
from litestar.datastructures import State
from litestar.response import Stream

from api.auth import Principal
from engine.errors import InvalidInput, NotFound
from engine.joblogs import JobLogs, LogChunk
from engine.service import JobService
from schemas.common import TERMINAL

NDJSON = "application/x-ndjson"
CHANNELS = frozenset({"stdout", "stderr", "system"})
PARAMS = frozenset({"attempt", "follow", "channel", "format"})


class LogLine(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chunk of output in the `ndjson` format."""

    seq: int
    attempt: int
    channel: str
    data: str | None = None
    data_b64: str | None = None


def encode_line(chunk: LogChunk) -> bytes:
    """A chunk as one NDJSON line; bytes that are not UTF-8 travel in base64."""
    try:
        line = LogLine(
            seq=chunk.seq, attempt=chunk.attempt, channel=chunk.channel, data=chunk.data.decode()
        )
    except UnicodeDecodeError:
        encoded = base64.b64encode(chunk.data).decode()
        line = LogLine(
            seq=chunk.seq, attempt=chunk.attempt, channel=chunk.channel, data_b64=encoded
        )
    return msgspec.json.encode(line) + b"\n"


class LogQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of a logs request, checked."""

    attempt: int | None
    follow: bool
    channels: frozenset[str]
    text: bool


def parse_query(params: dict[str, str]) -> LogQuery:
    """Check the query string; InvalidInput names the offending parameter."""
    unknown = sorted(set(params) - PARAMS)
    if unknown:
        raise InvalidInput(unknown[0], "unknown query parameter")
    raw_attempt = params.get("attempt")
    if raw_attempt is not None and not (raw_attempt.isdigit() and int(raw_attempt) >= 1):
        raise InvalidInput("attempt", "a positive integer")
    follow = params.get("follow", "false").lower()
    if follow not in {"true", "false", "1", "0"}:
        raise InvalidInput("follow", "`true` or `false`")
    channels = frozenset(c for c in params.get("channel", "").split(",") if c) or CHANNELS
    if not channels <= CHANNELS:
        raise InvalidInput("channel", f"a comma-separated subset of {', '.join(sorted(CHANNELS))}")
    fmt = params.get("format", "ndjson")
    if fmt not in {"ndjson", "text"}:
        raise InvalidInput("format", "`ndjson` or `text`")
    return LogQuery(
        attempt=int(raw_attempt) if raw_attempt else None,
        follow=follow in {"true", "1"},
        channels=channels,
        text=fmt == "text",
    )


@get("/v1/jobs/{job_id:str}/logs")
async def job_logs(
    job_id: str, request: Request[Any, Any, Any], state: State, who: Principal
) -> Stream:
    """A job's output, streamed; with `follow=true` live until the attempt is over."""
    query = parse_query(dict(request.query_params))
    service: JobService = state.deps.service
    await service.catch_up(who.account)
    job = await service.get(who.account, job_id)
    logs: JobLogs | None = state.deps.logs
    if logs is None:
        raise NotFound("log stream", "of this deployment")
    attempt = query.attempt or job.attempt

    async def over() -> bool:
        current = service.read_model.get(who.account, job_id)
        return current is None or current.attempt != attempt or current.status in TERMINAL

    async def body() -> AsyncIterator[bytes]:
        chunks = logs.read(who.account, job_id, attempt, follow=over if query.follow else None)
        async for chunk in chunks:
            if chunk.channel in query.channels:
                yield chunk.data if query.text else encode_line(chunk)

    media = "text/plain; charset=utf-8" if query.text else NDJSON
    return Stream(body(), media_type=media, headers={"Cache-Control": "no-store"})


ROUTES = [job_logs]
