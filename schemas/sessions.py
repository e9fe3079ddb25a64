"""Sessions and workspaces: aggregates of the same log as jobs, with their events and state."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

import msgspec

from schemas.events import Envelope

SessionType = Literal["sandbox", "browser"]


class SessionStatus(StrEnum):
    """Where a session is in its life."""

    OPENING = "opening"
    OPEN = "open"
    TERMINATED = "terminated"
    EXPIRED = "expired"
    FAILED = "failed"


SESSION_ENDED: frozenset[SessionStatus] = frozenset(
    {SessionStatus.TERMINATED, SessionStatus.EXPIRED, SessionStatus.FAILED}
)


class SessionEvent(Envelope, frozen=True, kw_only=True):
    """Envelope of an event of the session aggregate."""

    session_id: str


class SessionOpened(SessionEvent, frozen=True, kw_only=True, tag="SessionOpened"):
    """A client asked for a live sandbox or browser."""

    session_type: SessionType
    workspace: str | None = None
    image: str | None = None
    ephemeral: bool = False
    ttl_seconds: int | None = None
    idle_timeout_seconds: int | None = None
    options: dict[str, Any] = {}


class SessionStarted(SessionEvent, frozen=True, kw_only=True, tag="SessionStarted"):
    """The backend resource is up (a container, a browser context)."""

    executor_id: str
    resource: dict[str, Any] = {}


class SessionUsed(SessionEvent, frozen=True, kw_only=True, tag="SessionUsed"):
    """A job ran in the session."""

    job_id: str
    detail: dict[str, Any] = {}


class SessionTerminated(SessionEvent, frozen=True, kw_only=True, tag="SessionTerminated"):
    """The session was closed on request."""

    reason: str = "terminated by request"
    job_id: str | None = None


class SessionExpired(SessionEvent, frozen=True, kw_only=True, tag="SessionExpired"):
    """The session outlived its TTL or idle timeout."""

    reason: Literal["ttl", "idle"] = "ttl"


class SessionFailed(SessionEvent, frozen=True, kw_only=True, tag="SessionFailed"):
    """The backend resource could not be started or was lost."""

    code: str
    message: str


class WorkspaceEvent(Envelope, frozen=True, kw_only=True):
    """Envelope of an event of the workspace aggregate (its id is its name in the account)."""

    workspace: str


class WorkspaceCreated(WorkspaceEvent, frozen=True, kw_only=True, tag="WorkspaceCreated"):
    """A workspace's volume was created on first use."""

    volume: str
    job_id: str | None = None


class WorkspaceDeleted(WorkspaceEvent, frozen=True, kw_only=True, tag="WorkspaceDeleted"):
    """A workspace's volume and record were removed."""

    job_id: str | None = None


AnySessionEvent = (
    SessionOpened
    | SessionStarted
    | SessionUsed
    | SessionTerminated
    | SessionExpired
    | SessionFailed
)
AnyWorkspaceEvent = WorkspaceCreated | WorkspaceDeleted


class SessionState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A session as the fold of its events."""

    id: str
    account: str
    type: SessionType
    status: SessionStatus
    workspace: str | None
    image: str | None
    ephemeral: bool
    ttl_seconds: int | None
    idle_timeout_seconds: int | None
    options: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    last_used_at: datetime | None = None
    ended_at: datetime | None = None
    end_reason: str | None = None
    executor_id: str | None = None
    resource: dict[str, Any] = {}
    jobs: int = 0
    seq: int = 0
    last_hash: str = ""


class WorkspaceState(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A workspace as the fold of its events."""

    name: str
    account: str
    volume: str
    created_at: datetime
    deleted_at: datetime | None = None
    seq: int = 0
    last_hash: str = ""
