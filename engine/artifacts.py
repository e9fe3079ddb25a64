"""Job artifacts (screenshots, files) in a JetStream object store; events carry references only.

Objects are named `<account>/<job_id>/<name>`, so one account can never read another's, and
expire with the event streams' age limit.
"""

from __future__ import annotations

import re

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta, ObjectStoreConfig, StorageType
from nats.js.object_store import ObjectStore

from engine.errors import StoreUnavailable

BUCKET = "CHASER_ARTIFACTS"
DAY = 86_400.0
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def artifact_key(account: str, job_id: str, name: str) -> str:
    """The object name of one artifact of one job."""
    return f"{account}/{job_id}/{name}"


class ArtifactStore:
    """Put and get job artifacts."""

    def __init__(self, js: JetStreamContext, *, replicas: int = 1, max_age_days: float = 30.0):
        self._js = js
        self._replicas = replicas
        self._max_age = max_age_days * DAY
        self._store: ObjectStore | None = None

    async def _bucket(self) -> ObjectStore:
        if self._store is None:
            try:
                self._store = await self._js.object_store(BUCKET)
            except nats.js.errors.BucketNotFoundError:
                config = ObjectStoreConfig(
                    ttl=self._max_age, replicas=self._replicas, storage=StorageType.FILE
                )
                self._store = await self._js.create_object_store(BUCKET, config=config)
        return self._store

    async def put(
        self, account: str, job_id: str, name: str, data: bytes, content_type: str
    ) -> None:
        """Store an artifact (replacing one of the same name)."""
        if not NAME.fullmatch(name):
            raise ValueError(f"bad artifact name {name!r}")
        meta = ObjectMeta(name=artifact_key(account, job_id, name), description=content_type)
        try:
            store = await self._bucket()
            await store.put(meta.name or "", data, meta=meta)
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"store artifact {name}: {exc!r}") from exc

    async def get(self, account: str, job_id: str, name: str) -> tuple[bytes, str] | None:
        """An artifact's bytes and content type, or None when there is no such artifact."""
        if not NAME.fullmatch(name):
            return None
        try:
            store = await self._bucket()
            found = await store.get(artifact_key(account, job_id, name))
        except nats.js.errors.ObjectNotFoundError:
            return None
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"read artifact {name}: {exc!r}") from exc
        content_type = found.info.description or "application/octet-stream"
        return bytes(found.data or b""), content_type
