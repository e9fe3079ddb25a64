"""The JetStream work queue: released attempts, one subject per kind and account."""

from __future__ import annotations

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from engine.errors import StoreUnavailable
from engine.subjects import WORK_STREAM, work_subject
from schemas.work import WorkItem

_encode = msgspec.json.Encoder().encode


class JetStreamWorkQueue:
    """Publishes WorkItems to CHASER_WORK, de-duplicated per job attempt."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js

    async def release(self, item: WorkItem) -> None:
        """Publish one attempt; a repeat within the duplicate window is dropped by the server."""
        job = item.state
        try:
            await self._js.publish(
                work_subject(job.kind, job.account),
                _encode(item),
                headers={"Nats-Msg-Id": f"{job.id}:{job.attempt}"},
                stream=WORK_STREAM,
            )
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"release {job.id}: {exc!r}") from exc
