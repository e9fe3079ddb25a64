"""Webhook rules: the signature, the retry schedule, what to do after an attempt. Pure.

Signature: `X-Chaser-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` with the
webhook's secret as key. Retries: the n-th failed attempt waits RETRY_BASE·2^(n-1) seconds
(capped at RETRY_CAP); a delivery is abandoned only once its failed attempts span RETRY_SPAN.
JetStream counts the attempts (a message's delivery count), so the schedule survives restarts.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta

import msgspec

RETRY_BASE = 1.0
RETRY_CAP = 3600.0
RETRY_SPAN = timedelta(hours=24)
SIGNATURE_TOLERANCE = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The `X-Chaser-Signature` value for a body sent at `timestamp` (unix seconds)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify_signature(
    secret: str, body: bytes, header: str, *, now: int, tolerance: int = SIGNATURE_TOLERANCE
) -> bool:
    """Whether a signature header is valid for `body` and no older than `tolerance` seconds."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp = fields.get("t", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance:
        return False
    expected = signature(secret, body, int(stamp)).split("v1=", 1)[1]
    return hmac.compare_digest(expected.encode(), fields.get("v1", "").strip().encode())


def retry_delay(attempt: int) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based)."""
    return min(RETRY_BASE * 2.0 ** max(attempt - 1, 0), RETRY_CAP)


def retry_span(attempts: int) -> float:
    """Seconds the schedule has waited between the first and the `attempts`-th attempt."""
    return sum(retry_delay(n) for n in range(1, attempts))


def _attempts_for(span: timedelta) -> int:
    attempts = 1
    while retry_span(attempts) < span.total_seconds():
        attempts += 1
    return attempts


# The attempt after which a failing delivery is given up: the first whose tries span a day.
MAX_ATTEMPTS = _attempts_for(RETRY_SPAN)


class AttemptOutcome(msgspec.Struct, frozen=True, kw_only=True):
    """What follows an attempt: `delivered`, `retry` after `delay` seconds, or `gave_up`."""

    outcome: str
    delay: float | None = None


def after_attempt(*, attempt: int, ok: bool) -> AttemptOutcome:
    """The decision after attempt number `attempt` succeeded (`ok`) or failed."""
    if ok:
        return AttemptOutcome(outcome="delivered")
    if attempt >= MAX_ATTEMPTS:
        return AttemptOutcome(outcome="gave_up")
    return AttemptOutcome(outcome="retry", delay=retry_delay(attempt))
