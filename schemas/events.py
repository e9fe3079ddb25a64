"""Job events: the only truth about a job, appended to JetStream and folded into state.

Evolution rules: a new field gets a default, a field's type never changes, a tag is never
reused, and decoders never forbid unknown fields, so every stored event stays readable.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from schemas.common import JobError, StepStatus

SCHEMA_VERSION = 1


# gc=False (inherited by every event): events never sit in reference cycles, and keeping
# millions of them out of the cycle collector's sweeps is much of what makes a rebuild fast.
class Envelope(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", gc=False):
    """Fields every event carries, whatever its aggregate."""

    event_id: str
    account: str
    at: datetime
    actor: str
    causation_id: str | None = None
    correlation_id: str | None = None
    schema_version: int = SCHEMA_VERSION
    prev_hash: str = ""


class JobEvent(Envelope, frozen=True, kw_only=True):
    """Envelope of an event of the job aggregate."""

    job_id: str
    attempt: int = 1


class JobCreated(JobEvent, frozen=True, kw_only=True, tag="JobCreated"):
    """A client asked for a job; it is scheduled when `run_at` is after `at`, else queued."""

    kind: str
    input: dict[str, Any]
    max_attempts: int = 1
    run_at: datetime | None = None
    idempotency_key: str | None = None
    request_digest: str | None = None
    retry_on_exit: bool = False
    backoff_ms: int = 1000


class JobQueued(JobEvent, frozen=True, kw_only=True, tag="JobQueued"):
    """A scheduled job reached its `run_at` and may be dispatched."""


class JobStarted(JobEvent, frozen=True, kw_only=True, tag="JobStarted"):
    """An executor took the job's lease and began the attempt."""

    executor_id: str


class StepFinished(JobEvent, frozen=True, kw_only=True, tag="StepFinished"):
    """One step of the running attempt ended; output is bounded to tails."""

    index: int
    name: str
    status: StepStatus
    exit_code: int | None = None
    result: Any = None
    duration_ms: int = 0
    output_tail: str = ""
    output_bytes: int = 0


class JobSucceeded(JobEvent, frozen=True, kw_only=True, tag="JobSucceeded"):
    """The attempt finished successfully."""

    result: Any = None


class JobFailed(JobEvent, frozen=True, kw_only=True, tag="JobFailed"):
    """The attempt failed; `retriable` says whether the retry policy may run it again."""

    error: JobError
    retriable: bool = False
    result: Any = None


class JobCancelled(JobEvent, frozen=True, kw_only=True, tag="JobCancelled"):
    """The job was cancelled before or during its attempt."""

    reason: str = "cancelled by request"


class JobRetried(JobEvent, frozen=True, kw_only=True, tag="JobRetried"):
    """A failed or cancelled job starts attempt `attempt` at `run_at` (now when absent)."""

    run_at: datetime | None = None
    automatic: bool = False


AnyJobEvent = (
    JobCreated
    | JobQueued
    | JobStarted
    | StepFinished
    | JobSucceeded
    | JobFailed
    | JobCancelled
    | JobRetried
)

JOB_EVENT_TYPES: tuple[type[JobEvent], ...] = (
    JobCreated,
    JobQueued,
    JobStarted,
    StepFinished,
    JobSucceeded,
    JobFailed,
    JobCancelled,
    JobRetried,
)

JOB_EVENT_NAMES: frozenset[str] = frozenset(t.__name__ for t in JOB_EVENT_TYPES)

_encoder = msgspec.json.Encoder()
_job_decoder = msgspec.json.Decoder(AnyJobEvent)


def encode_event(event: Envelope) -> bytes:
    """Serialise an event to the JSON stored in the stream."""
    return _encoder.encode(event)


def decode_job_event(data: bytes) -> AnyJobEvent:
    """Decode a stored job event; raises msgspec.DecodeError on anything else."""
    event: AnyJobEvent = _job_decoder.decode(data)
    return event


def event_type(event: Envelope) -> str:
    """The tag of an event, which is also the last token of its subject."""
    return type(event).__name__
