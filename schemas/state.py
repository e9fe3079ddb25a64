"""Folded job state: what the read model holds and the API returns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from schemas.common import JobError, JobStatus, StepStatus


class StepRecord(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """One finished step of the current attempt."""

    index: int
    name: str
    status: StepStatus
    exit_code: int | None = None
    result: Any = None
    duration_ms: int = 0
    output_tail: str = ""
    output_bytes: int = 0


class JobState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A job as the fold of its events; `seq` and `last_hash` locate its newest event."""

    id: str
    account: str
    kind: str
    input: dict[str, Any]
    status: JobStatus
    attempt: int
    max_attempts: int
    run_at: datetime | None
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    steps: tuple[StepRecord, ...] = ()
    result: Any = None
    error: JobError | None = None
    retriable: bool = False
    retry_on_exit: bool = False
    backoff_ms: int = 1000
    request_digest: str | None = None
    executor_id: str | None = None
    queued_at: datetime | None = None
    lost_leases: int = 0
    seq: int = 0
    last_hash: str = ""
    events: int = 0
