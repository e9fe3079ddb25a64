"""Secrets of job inputs kept out of the event log.

A `github.runner` job's `input.secrets` never reaches an event: before the job is created
they are stored in the KV bucket CHASER_SECRETS under a random reference scoped to the
account, and the stored input carries `secrets_ref` (and the secrets' names) instead. The
executor opens the reference when it runs the job. Entries expire with the event retention,
so a retry within it still has its secrets.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.kv import KeyValue

from engine.errors import NotFound, StoreUnavailable

SECRETS_BUCKET = "CHASER_SECRETS"
SEALED_KINDS = frozenset({"github.runner"})


class SecretVault:
    """Seals job inputs' secrets into a KV bucket and opens them for executors."""

    def __init__(self, js: JetStreamContext, *, replicas: int = 1, max_age_days: float = 30.0):
        self._js = js
        self._replicas = replicas
        self._ttl = timedelta(days=max_age_days).total_seconds()
        self._kv: KeyValue | None = None

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            try:
                self._kv = await self._js.key_value(SECRETS_BUCKET)
            except nats.js.errors.BucketNotFoundError:
                self._kv = await self._js.create_key_value(
                    KeyValueConfig(
                        bucket=SECRETS_BUCKET,
                        history=1,
                        ttl=self._ttl,
                        replicas=self._replicas,
                        storage=StorageType.FILE,
                    )
                )
        return self._kv

    async def seal(self, account: str, kind: str, job_input: dict[str, Any]) -> dict[str, Any]:
        """The input to store: its `secrets` replaced by a reference (unchanged when the
        kind has no secrets or none were given)."""
        given = job_input.get("secrets")
        if kind not in SEALED_KINDS or not isinstance(given, dict) or not given:
            return job_input
        ref = "sec_" + secrets.token_hex(12)
        try:
            kv = await self._bucket()
            await kv.put(f"{account}.{ref}", msgspec.json.encode(given))
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"cannot store the job's secrets: {exc!r}") from exc
        sealed = {k: val for k, val in job_input.items() if k != "secrets"}
        sealed["secrets_ref"] = ref
        sealed["secret_names"] = sorted(given)
        return sealed

    async def open(self, account: str, ref: str) -> dict[str, str]:
        """The secrets behind a reference; NotFound once they expired."""
        try:
            kv = await self._bucket()
            entry = await kv.get(f"{account}.{ref}")
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError) as exc:
            raise NotFound("secrets", ref) from exc
        except (nats.errors.Error, nats.js.errors.Error) as exc:
            raise StoreUnavailable(f"cannot read the job's secrets: {exc!r}") from exc
        if not entry.value:
            raise NotFound("secrets", ref)
        found: dict[str, str] = msgspec.json.decode(entry.value, type=dict[str, str])
        return found
