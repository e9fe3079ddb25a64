"""Which executor families are up: executors heartbeat into a KV bucket whose entries expire."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

EXECUTORS_BUCKET = "CHASER_EXECUTORS"
PRESENCE_TTL = 15.0
REFRESH_SECONDS = 2.0


class Presence(msgspec.Struct, frozen=True, kw_only=True):
    """One live executor pool."""

    executor_id: str
    family: str
    kinds: list[str]
    concurrency: int
    active: int
    seen_at: datetime
    labels: list[str] = []


async def presence_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The bucket of live executors (entries vanish PRESENCE_TTL after their last beat)."""
    try:
        return await js.key_value(EXECUTORS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=EXECUTORS_BUCKET,
                history=1,
                ttl=PRESENCE_TTL,
                replicas=replicas,
                storage=StorageType.MEMORY,
            )
        )


class ExecutorRegistry:
    """A cached view of live executors, refreshed every REFRESH_SECONDS."""

    def __init__(self, kv: KeyValue, local: set[str] | None = None) -> None:
        self._kv = kv
        self._local = local if local is not None else set()
        self._live: dict[str, Presence] = {}
        self._at = 0.0
        self._task: asyncio.Task[None] | None = None

    def mark_local(self, family: str) -> None:
        """A family served in this very process is available without a round trip."""
        self._local.add(family)

    def available(self, family: str) -> bool:
        """Whether some executor of `family` is up."""
        return family in self._local or any(p.family == family for p in self._live.values())

    def live(self) -> list[Presence]:
        """Every live executor pool."""
        return list(self._live.values())

    async def refresh(self) -> None:
        """Read the bucket now."""
        live: dict[str, Presence] = {}
        try:
            names = await self._kv.keys()
        except nats.js.errors.NoKeysError:
            names = []
        for name in names:
            with contextlib.suppress(
                nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError
            ):
                entry = await self._kv.get(name)
                if entry.value:
                    live[name] = msgspec.json.decode(entry.value, type=Presence)
        self._live = live
        self._at = time.monotonic()

    async def run(self, on_change: asyncio.Event | None = None) -> None:
        """Refresh forever; set `on_change` when the set of families changes."""
        while True:
            before = {p.family for p in self._live.values()}
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self.refresh()
            if on_change is not None and {p.family for p in self._live.values()} != before:
                on_change.set()
            await asyncio.sleep(REFRESH_SECONDS)


def presence_key(presence: Presence) -> str:
    """The KV key of a pool: executor ids hold `@` and `:`, which KV keys may not."""
    return re.sub(r"[^-/_=.A-Za-z0-9]", "_", f"{presence.family}.{presence.executor_id}")


async def beat(kv: KeyValue, presence: Presence) -> None:
    """Announce (or re-announce) a live executor pool."""
    key = presence_key(presence)
    await kv.put(
        key, msgspec.json.encode(msgspec.structs.replace(presence, seen_at=datetime.now(UTC)))
    )


async def leave(kv: KeyValue, presence: Presence) -> None:
    """Withdraw an executor pool's announcement."""
    with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
        await kv.delete(presence_key(presence))
