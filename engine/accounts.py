"""API keys (stored hashed) and per-account limits, kept in JetStream KV buckets."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

import msgspec
import nats.js.errors
from nats.js import JetStreamContext

from engine.errors import InvalidInput, NotFound
from engine.subjects import KEYS_BUCKET, META_BUCKET
from schemas.common import account_problem

KEY_PREFIX = "chk"
CACHE_SECONDS = 2.0


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A stored key: its public id, the hash of its secret, and its accounts."""

    id: str
    hash: str
    accounts: list[str]
    created_at: datetime
    revoked_at: datetime | None = None
    name: str | None = None


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as shown once at creation."""

    key: str
    id: str
    accounts: list[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_accounts(accounts: list[str]) -> None:
    """Refuse account ids that are not subject-safe."""
    if not accounts:
        raise InvalidInput("account", "at least one account is required")
    for account in accounts:
        problem = account_problem(account)
        if problem:
            raise InvalidInput("account", f"{account!r}: {problem}")


class KeyRing:
    """Creates, lists, revokes and verifies API keys."""

    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}

    async def _kv(self) -> nats.js.kv.KeyValue:
        return await self._js.key_value(KEYS_BUCKET)

    async def create(self, accounts: list[str], name: str | None = None) -> IssuedKey:
        """Issue a key for `accounts`; the secret is returned here and never again."""
        check_accounts(accounts)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(24)
        full = f"{KEY_PREFIX}_{key_id}_{secret}"
        stored = ApiKey(
            id=key_id,
            hash=_hash(full),
            accounts=sorted(set(accounts)),
            created_at=datetime.now(UTC),
            name=name,
        )
        kv = await self._kv()
        await kv.create(key_id, msgspec.json.encode(stored))
        return IssuedKey(key=full, id=key_id, accounts=stored.accounts)

    async def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, without secrets."""
        kv = await self._kv()
        try:
            names = await kv.keys()
        except nats.js.errors.NoKeysError:
            return []
        out = []
        for name in names:
            entry = await kv.get(name)
            if entry.value:
                out.append(msgspec.json.decode(entry.value, type=ApiKey))
        return sorted(out, key=lambda k: k.created_at)

    async def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key by id; it stops working within CACHE_SECONDS everywhere."""
        kv = await self._kv()
        try:
            entry = await kv.get(key_id)
        except nats.js.errors.KeyNotFoundError as exc:
            raise NotFound("key", key_id) from exc
        assert entry.value is not None
        stored = msgspec.json.decode(entry.value, type=ApiKey)
        revoked = msgspec.structs.replace(stored, revoked_at=datetime.now(UTC))
        await kv.put(key_id, msgspec.json.encode(revoked))
        self._cache.pop(key_id, None)
        return revoked

    async def verify(self, presented: str) -> ApiKey | None:
        """The key a bearer token belongs to, or None when it is unknown or revoked."""
        parts = presented.split("_", 2)
        if len(parts) != 3 or parts[0] != KEY_PREFIX:
            return None
        key_id = parts[1]
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            stored = await self._fetch(key_id)
            self._cache[key_id] = (now, stored)
        else:
            stored = cached[1]
        if stored is None or stored.revoked_at is not None:
            return None
        if not hmac.compare_digest(stored.hash, _hash(presented)):
            return None
        return stored

    async def _fetch(self, key_id: str) -> ApiKey | None:
        kv = await self._kv()
        try:
            entry = await kv.get(key_id)
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        if not entry.value:
            return None
        return msgspec.json.decode(entry.value, type=ApiKey)


LIMIT_PREFIX = "limit."


async def set_account_limit(js: JetStreamContext, account: str, limit: int | None) -> None:
    """Override an account's concurrency limit (None restores the deployment default)."""
    check_accounts([account])
    if limit is not None and limit < 1:
        raise InvalidInput("limit", "must be at least 1")
    kv = await js.key_value(META_BUCKET)
    if limit is None:
        await kv.delete(LIMIT_PREFIX + account)
    else:
        await kv.put(LIMIT_PREFIX + account, str(limit).encode())


async def account_limits(js: JetStreamContext) -> dict[str, int]:
    """Every per-account override."""
    kv = await js.key_value(META_BUCKET)
    try:
        names = await kv.keys()
    except nats.js.errors.NoKeysError:
        return {}
    out = {}
    for name in names:
        if name.startswith(LIMIT_PREFIX):
            entry = await kv.get(name)
            if entry.value:
                out[name.removeprefix(LIMIT_PREFIX)] = int(entry.value)
    return out
