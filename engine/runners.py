"""Self-hosted runners that are up: `github` executors announce their runners in a KV
bucket whose entries expire, and `GET /v1/runners` reads it."""

from __future__ import annotations

import contextlib
import re

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from schemas.runners import RunnerView

RUNNERS_BUCKET = "CHASER_RUNNERS"
RUNNER_TTL = 15.0


async def runners_bucket(js: JetStreamContext, replicas: int = 1) -> KeyValue:
    """The bucket of live runners (an entry vanishes RUNNER_TTL after its last beat)."""
    try:
        return await js.key_value(RUNNERS_BUCKET)
    except nats.js.errors.BucketNotFoundError:
        return await js.create_key_value(
            KeyValueConfig(
                bucket=RUNNERS_BUCKET,
                history=1,
                ttl=RUNNER_TTL,
                replicas=replicas,
                storage=StorageType.MEMORY,
            )
        )


def runner_key(view: RunnerView) -> str:
    """The KV key of one runner of one executor."""
    return re.sub(r"[^-/_=.A-Za-z0-9]", "_", f"{view.executor_id}.{view.name}")


class RunnerBoard:
    """Announces and lists runners."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def announce(self, views: list[RunnerView]) -> None:
        """Put (or refresh) runners' entries."""
        for view in views:
            await self._kv.put(runner_key(view), msgspec.json.encode(view))

    async def withdraw(self, views: list[RunnerView]) -> None:
        """Remove runners' entries."""
        for view in views:
            with contextlib.suppress(nats.errors.Error, nats.js.errors.Error):
                await self._kv.delete(runner_key(view))

    async def live(self) -> list[RunnerView]:
        """Every runner announced within RUNNER_TTL, by name."""
        try:
            keys = await self._kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        found: list[RunnerView] = []
        for key in keys:
            with contextlib.suppress(
                nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError
            ):
                entry = await self._kv.get(key)
                if entry.value:
                    found.append(msgspec.json.decode(entry.value, type=RunnerView))
        return sorted(found, key=lambda view: (view.name, view.executor_id))
