"""Request and response bodies of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from schemas.common import JobError, JobStatus
from schemas.sessions import SessionState
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


class OpenSessionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Body of `POST /v1/sessions`: a live sandbox (workspace or ephemeral image) or browser."""

    type: Literal["sandbox", "browser"]
    workspace: (
        Annotated[
            str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
        ]
        | None
    ) = None
    ephemeral: bool = False
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)] | None = None
    idle_timeout_seconds: Annotated[int, msgspec.Meta(ge=1, le=7 * 86_400)] | None = None
    options: dict[str, Any] = {}

    def __post_init__(self) -> None:
        if self.type == "sandbox":
            if self.ephemeral == (self.workspace is not None):
                raise ValueError("a sandbox session needs `workspace` or `ephemeral: true`")
            if self.ephemeral and self.image is None:
                raise ValueError("`image` is required when `ephemeral` is true")
        elif self.workspace is not None or self.ephemeral or self.image is not None:
            raise ValueError("a browser session takes no `workspace`, `ephemeral` or `image`")


class SessionPage(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/sessions`."""

    items: list[SessionState]


class WorkspaceView(msgspec.Struct, frozen=True, kw_only=True):
    """One workspace of `GET /v1/workspaces`."""

    name: str
    created_at: datetime
    last_used_at: datetime | None
    size_bytes: int | None = None


class WorkspacePage(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/workspaces`."""

    items: list[WorkspaceView]
