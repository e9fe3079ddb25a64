"""Reading a job's output back from the log stream (CHASER_LOGS): what is stored, then, when
following, what arrives while the attempt runs.

Executors publish each chunk of an attempt's output on
`chaser.logs.<account>.<job_id>.<attempt>.<channel>`; the stream keeps it with limits
retention. A reader is an ordered push consumer filtered to one attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from engine.errors import StoreUnavailable
from engine.subjects import LOG_STREAM, log_subject

IDLE_POLL = 0.25
SETTLE = 0.3


class LogChunk(msgspec.Struct, frozen=True, kw_only=True):
    """One stored piece of output."""

    seq: int
    attempt: int
    channel: str
    data: bytes


def _chunk(msg: Msg) -> LogChunk:
    tokens = msg.subject.split(".")
    return LogChunk(
        seq=msg.metadata.sequence.stream,
        attempt=int(tokens[4]) if tokens[4].isdigit() else 0,
        channel=tokens[5],
        data=msg.data,
    )


class JobLogs:
    """The log stream of a deployment, read one attempt at a time."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def _stored(self, scope: str) -> bool:
        """Whether the stream holds anything under `scope` now."""
        try:
            info = await self._js.stream_info(LOG_STREAM, subjects_filter=scope)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"log stream: {exc!r}") from exc
        return bool(info.state.subjects)

    async def read(
        self,
        account: str,
        job_id: str,
        attempt: int,
        *,
        follow: Callable[[], Awaitable[bool]] | None = None,
    ) -> AsyncIterator[LogChunk]:
        """Every chunk of an attempt in order; with `follow` (which answers whether the
        attempt is over), keep going until it is over and its last output is read."""
        scope = log_subject(account, job_id, attempt, "*")
        if follow is None and not await self._stored(scope):
            return
        try:
            sub = await self._js.subscribe(
                scope,
                stream=LOG_STREAM,
                ordered_consumer=True,
                deliver_policy=DeliverPolicy.ALL,
            )
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"log stream: {exc!r}") from exc
        try:
            async for chunk in _drain(sub, follow):
                yield chunk
        finally:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await sub.unsubscribe()


async def _drain(
    sub: JetStreamContext.PushSubscription, follow: Callable[[], Awaitable[bool]] | None
) -> AsyncIterator[LogChunk]:
    """Messages until caught up (not following) or until the attempt is over and quiet."""
    over = follow is None
    while True:
        try:
            msg = await sub.next_msg(timeout=SETTLE if over else IDLE_POLL)
        except (TimeoutError, nats.errors.TimeoutError):
            if over:
                return
            assert follow is not None
            over = await follow()
            continue
        yield _chunk(msg)
        if msg.metadata.num_pending == 0 and follow is None:
            return
