"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec

from schemas.common import JobError, JobStatus
from schemas.state import JobState, StepRecord

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


class CreateJobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /v1/jobs`."""

    kind: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    input: dict[str, Any] = {}
    run_at: AwareDatetime | None = None
    idempotency_key: Annotated[str, msgspec.Meta(min_length=1, max_length=255)] | None = None
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 1
    backoff_ms: Annotated[int, msgspec.Meta(ge=0, le=86_400_000)] = 1000
    retry_on_exit: bool = False


class JobResource(msgspec.Struct, frozen=True, kw_only=True):
    """A job as the API shows it."""

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
    started_at: datetime | None
    finished_at: datetime | None
    steps: tuple[StepRecord, ...]
    result: Any
    error: JobError | None
    seq: int

    @classmethod
    def of(cls, state: JobState) -> JobResource:
        """Project the folded state onto the public fields."""
        return cls(
            id=state.id,
            account=state.account,
            kind=state.kind,
            input=state.input,
            status=state.status,
            attempt=state.attempt,
            max_attempts=state.max_attempts,
            run_at=state.run_at,
            idempotency_key=state.idempotency_key,
            created_at=state.created_at,
            started_at=state.started_at,
            finished_at=state.finished_at,
            steps=state.steps,
            result=state.result,
            error=state.error,
            seq=state.seq,
        )


class JobPage(msgspec.Struct, frozen=True, kw_only=True):
    """One page of `GET /v1/jobs`, newest first."""

    items: list[JobResource]
    next_cursor: str | None


class KindView(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of `GET /v1/jobs/kinds`."""

    kind: str
    description: str
    available: bool
    input_schema: dict[str, Any]


class KindList(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/jobs/kinds`."""

    kinds: list[KindView]
