"""Decisions: pure functions from state and a command to the events to append.

Clock readings, ids and randomness come in as arguments (`Stamp`, `jitter`), never from here.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

import msgspec

from engine.errors import InvalidTransition
from engine.fold import check
from schemas.common import LEASE_LOSS_CODES as LEASE_LOSSES
from schemas.common import RETRIABLE_FROM, TERMINAL, JobError, JobStatus, StepStatus
from schemas.events import (
    JobCancelled,
    JobCreated,
    JobFailed,
    JobQueued,
    JobRetried,
    JobStarted,
    JobSucceeded,
    StepFinished,
)
from schemas.state import JobState

MAX_BACKOFF = timedelta(hours=1)
MAX_LEASE_LOSSES = 3


class Stamp(msgspec.Struct, frozen=True, kw_only=True):
    """Who acts, when, and the id the new event gets."""

    event_id: str
    at: datetime
    actor: str
    correlation_id: str | None = None
    causation_id: str | None = None


# Crockford's base32 alphabet, in ASCII order, so encoded ids sort like the bytes they encode.
_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"


def _crockford(data: bytes) -> str:
    number = int.from_bytes(data, "big")
    length = (len(data) * 8 + 4) // 5
    return "".join(_CROCKFORD[(number >> (5 * i)) & 31] for i in reversed(range(length)))


def job_id_for(*, at: datetime, entropy: bytes) -> str:
    """A fresh job id: milliseconds since the epoch then entropy, so ids sort by creation."""
    millis = int(at.timestamp() * 1000).to_bytes(6, "big")
    return "job_" + _crockford(millis + entropy[:10])


def idempotent_job_id(account: str, key: str) -> str:
    """The job id an idempotency key maps to: the same key in the same account, the same job."""
    digest = hashlib.sha256(f"{account}\x00{key}".encode()).digest()
    return "job_k" + _crockford(digest[:15])


def request_digest(body: dict[str, Any]) -> str:
    """A digest of a create request's meaningful content, to tell a replay from a conflict."""
    canonical = msgspec.json.encode(body, order="sorted")
    return hashlib.sha256(canonical).hexdigest()


def _envelope(state: JobState, stamp: Stamp, attempt: int | None = None) -> dict[str, Any]:
    return {
        "event_id": stamp.event_id,
        "account": state.account,
        "at": stamp.at,
        "actor": stamp.actor,
        "correlation_id": stamp.correlation_id or state.id,
        "causation_id": stamp.causation_id,
        "job_id": state.id,
        "attempt": state.attempt if attempt is None else attempt,
        "prev_hash": state.last_hash,
    }


def create(
    *,
    job_id: str,
    account: str,
    kind: str,
    input: dict[str, Any],
    stamp: Stamp,
    run_at: datetime | None = None,
    max_attempts: int = 1,
    idempotency_key: str | None = None,
    digest: str | None = None,
    retry_on_exit: bool = False,
    backoff_ms: int = 1000,
) -> JobCreated:
    """The event that creates a job."""
    return JobCreated(
        event_id=stamp.event_id,
        account=account,
        at=stamp.at,
        actor=stamp.actor,
        correlation_id=stamp.correlation_id or job_id,
        job_id=job_id,
        kind=kind,
        input=input,
        run_at=run_at,
        max_attempts=max_attempts,
        idempotency_key=idempotency_key,
        request_digest=digest,
        retry_on_exit=retry_on_exit,
        backoff_ms=backoff_ms,
    )


def cancel(state: JobState, stamp: Stamp, reason: str = "cancelled by request") -> JobCancelled:
    """Cancel a job that has not reached a terminal state."""
    if state.status in TERMINAL:
        raise InvalidTransition(state.id, state.status, "cancel")
    event = JobCancelled(**_envelope(state, stamp), reason=reason)
    check(state, event)
    return event


def retry(state: JobState, stamp: Stamp) -> JobRetried:
    """Retry a failed or cancelled job now, as a new attempt."""
    if state.status not in RETRIABLE_FROM:
        raise InvalidTransition(state.id, state.status, "retry")
    event = JobRetried(**_envelope(state, stamp, attempt=state.attempt + 1))
    check(state, event)
    return event


def queue_due(state: JobState, stamp: Stamp) -> JobQueued:
    """Move a scheduled job whose time has come to the queue."""
    event = JobQueued(**_envelope(state, stamp))
    check(state, event)
    return event


def start(state: JobState, *, attempt: int, executor_id: str, stamp: Stamp) -> JobStarted:
    """An executor takes attempt `attempt` of a queued job."""
    if state.status is not JobStatus.QUEUED or state.attempt != attempt:
        raise InvalidTransition(state.id, f"{state.status} at attempt {state.attempt}", "start")
    event = JobStarted(**_envelope(state, stamp), executor_id=executor_id)
    check(state, event)
    return event


def step_finished(state: JobState, stamp: Stamp, **fields: Any) -> StepFinished:
    """Record one finished step of the running attempt."""
    status = fields.pop("status")
    event = StepFinished(**_envelope(state, stamp), status=StepStatus(status), **fields)
    check(state, event)
    return event


def succeed(state: JobState, stamp: Stamp, result: Any) -> JobSucceeded:
    """The running attempt succeeded."""
    event = JobSucceeded(**_envelope(state, stamp), result=result)
    check(state, event)
    return event


def fail(
    state: JobState, stamp: Stamp, error: JobError, *, retriable: bool, result: Any = None
) -> JobFailed:
    """The attempt failed; `retriable` lets the retry policy run it again."""
    event = JobFailed(**_envelope(state, stamp), error=error, retriable=retriable, result=result)
    check(state, event)
    return event


def backoff(state: JobState, jitter: float) -> timedelta:
    """Exponential backoff with jitter in [0.5, 1.5) of the nominal delay, capped at an hour."""
    cap_ms = MAX_BACKOFF.total_seconds() * 1000
    nominal = state.backoff_ms * (2 ** min(max(state.attempt - 1, 0), 64))
    return timedelta(milliseconds=min(nominal * (0.5 + jitter), cap_ms))


def _lost_lease(state: JobState) -> bool:
    return state.error is not None and state.error.code in LEASE_LOSSES


def wants_retry(state: JobState) -> bool:
    """Whether the retry policy will run a failed job again."""
    if state.status is not JobStatus.FAILED or not state.retriable:
        return False
    if _lost_lease(state):
        return state.lost_leases <= MAX_LEASE_LOSSES
    # Attempts lost with their executor are not the job's: they do not use up max_attempts.
    return state.attempt - state.lost_leases < state.max_attempts


def auto_retry(state: JobState, stamp: Stamp, jitter: float) -> JobRetried | None:
    """The retry policy: a retriable failure with attempts left is retried after a backoff.

    A lost lease (the executor died or shut down) is the engine's fault, not the job's: it is
    run again at once, up to MAX_LEASE_LOSSES times, whatever `max_attempts` says.
    """
    if not wants_retry(state):
        return None
    run_at = None if _lost_lease(state) else stamp.at + backoff(state, jitter)
    event = JobRetried(
        **_envelope(state, stamp, attempt=state.attempt + 1), run_at=run_at, automatic=True
    )
    check(state, event)
    return event
