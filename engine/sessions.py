"""Sessions and workspaces as folds, with their decisions. Pure: no I/O, no clock."""

from __future__ import annotations

from typing import Any, assert_never

from msgspec.structs import replace

from engine.decide import Stamp
from engine.errors import InvalidTransition
from schemas.sessions import (
    SESSION_ENDED,
    AnySessionEvent,
    AnyWorkspaceEvent,
    SessionExpired,
    SessionFailed,
    SessionOpened,
    SessionStarted,
    SessionState,
    SessionStatus,
    SessionTerminated,
    SessionType,
    SessionUsed,
    WorkspaceCreated,
    WorkspaceDeleted,
    WorkspaceState,
)

# Which statuses each session event may be applied in.
SESSION_SOURCES: dict[type[AnySessionEvent], frozenset[SessionStatus]] = {
    SessionOpened: frozenset(),
    SessionStarted: frozenset({SessionStatus.OPENING}),
    SessionUsed: frozenset({SessionStatus.OPEN}),
    SessionTerminated: frozenset({SessionStatus.OPENING, SessionStatus.OPEN}),
    SessionExpired: frozenset({SessionStatus.OPENING, SessionStatus.OPEN}),
    SessionFailed: frozenset({SessionStatus.OPENING, SessionStatus.OPEN}),
}


def evolve_session(state: SessionState | None, event: AnySessionEvent) -> SessionState:
    """Apply one session event; raises InvalidTransition for one the lifecycle forbids."""
    if isinstance(event, SessionOpened):
        if state is not None:
            raise InvalidTransition(event.session_id, state.status, "SessionOpened")
        return SessionState(
            id=event.session_id,
            account=event.account,
            type=event.session_type,
            status=SessionStatus.OPENING,
            workspace=event.workspace,
            image=event.image,
            ephemeral=event.ephemeral,
            ttl_seconds=event.ttl_seconds,
            idle_timeout_seconds=event.idle_timeout_seconds,
            options=event.options,
            created_at=event.at,
            updated_at=event.at,
        )
    if state is None or state.status not in SESSION_SOURCES[type(event)]:
        status = "absent" if state is None else state.status
        raise InvalidTransition(event.session_id, status, type(event).__name__)
    state = replace(state, updated_at=event.at)
    match event:
        case SessionStarted():
            return replace(
                state,
                status=SessionStatus.OPEN,
                executor_id=event.executor_id,
                resource=event.resource,
                last_used_at=event.at,
            )
        case SessionUsed():
            resource = {**state.resource, **event.detail} if event.detail else state.resource
            return replace(state, last_used_at=event.at, jobs=state.jobs + 1, resource=resource)
        case SessionTerminated():
            return _ended(state, SessionStatus.TERMINATED, event.at, event.reason)
        case SessionExpired():
            return _ended(state, SessionStatus.EXPIRED, event.at, event.reason)
        case SessionFailed():
            return _ended(state, SessionStatus.FAILED, event.at, f"{event.code}: {event.message}")
        case SessionOpened():
            raise AssertionError("unreachable")
        case _:
            assert_never(event)


def _ended(state: SessionState, status: SessionStatus, at: Any, reason: str) -> SessionState:
    return replace(state, status=status, ended_at=at, end_reason=reason)


def evolve_workspace(state: WorkspaceState | None, event: AnyWorkspaceEvent) -> WorkspaceState:
    """Apply one workspace event: created (again after a delete), or deleted."""
    match event:
        case WorkspaceCreated():
            if state is not None and state.deleted_at is None:
                raise InvalidTransition(event.workspace, "created", "WorkspaceCreated")
            return WorkspaceState(
                name=event.workspace,
                account=event.account,
                volume=event.volume,
                created_at=event.at,
            )
        case WorkspaceDeleted():
            if state is None or state.deleted_at is not None:
                raise InvalidTransition(event.workspace, "absent", "WorkspaceDeleted")
            return replace(state, deleted_at=event.at)
        case _:
            assert_never(event)


def _session_envelope(state: SessionState, stamp: Stamp) -> dict[str, Any]:
    return {
        "event_id": stamp.event_id,
        "account": state.account,
        "at": stamp.at,
        "actor": stamp.actor,
        "correlation_id": stamp.correlation_id or state.id,
        "causation_id": stamp.causation_id,
        "session_id": state.id,
        "prev_hash": state.last_hash,
    }


def open_session(
    *,
    session_id: str,
    account: str,
    session_type: SessionType,
    stamp: Stamp,
    workspace: str | None = None,
    image: str | None = None,
    ephemeral: bool = False,
    ttl_seconds: int | None = None,
    idle_timeout_seconds: int | None = None,
    options: dict[str, Any] | None = None,
) -> SessionOpened:
    """The event that opens a session."""
    return SessionOpened(
        event_id=stamp.event_id,
        account=account,
        at=stamp.at,
        actor=stamp.actor,
        correlation_id=stamp.correlation_id or session_id,
        session_id=session_id,
        session_type=session_type,
        workspace=workspace,
        image=image,
        ephemeral=ephemeral,
        ttl_seconds=ttl_seconds,
        idle_timeout_seconds=idle_timeout_seconds,
        options=options or {},
    )


def _checked(state: SessionState, event: AnySessionEvent) -> AnySessionEvent:
    evolve_session(state, event)
    return event


def session_started(
    state: SessionState, stamp: Stamp, *, executor_id: str, resource: dict[str, Any]
) -> AnySessionEvent:
    """The backend resource of an opening session is up."""
    event = SessionStarted(
        **_session_envelope(state, stamp), executor_id=executor_id, resource=resource
    )
    return _checked(state, event)


def session_used(
    state: SessionState, stamp: Stamp, *, job_id: str, detail: dict[str, Any] | None = None
) -> AnySessionEvent:
    """A job ran in an open session."""
    if state.status in SESSION_ENDED:
        raise InvalidTransition(state.id, state.status, "use")
    event = SessionUsed(**_session_envelope(state, stamp), job_id=job_id, detail=detail or {})
    return _checked(state, event)


def terminate_session(
    state: SessionState, stamp: Stamp, *, reason: str = "terminated by request", job_id: str | None
) -> AnySessionEvent:
    """Close a live session."""
    if state.status in SESSION_ENDED:
        raise InvalidTransition(state.id, state.status, "terminate")
    event = SessionTerminated(**_session_envelope(state, stamp), reason=reason, job_id=job_id)
    return _checked(state, event)


def expire_session(state: SessionState, stamp: Stamp, *, reason: str) -> AnySessionEvent:
    """Close a session past its TTL (`ttl`) or idle timeout (`idle`)."""
    event = SessionExpired(
        **_session_envelope(state, stamp), reason="idle" if reason == "idle" else "ttl"
    )
    return _checked(state, event)


def fail_session(state: SessionState, stamp: Stamp, *, code: str, message: str) -> AnySessionEvent:
    """The session's backend could not start or was lost."""
    event = SessionFailed(**_session_envelope(state, stamp), code=code, message=message)
    return _checked(state, event)


def expiry_due(state: SessionState, now: Any) -> str | None:
    """Why a live session should expire at `now` (`ttl` or `idle`), or None."""
    if state.status in SESSION_ENDED:
        return None
    age = (now - state.created_at).total_seconds()
    if state.ttl_seconds is not None and age >= state.ttl_seconds:
        return "ttl"
    idle = (now - (state.last_used_at or state.created_at)).total_seconds()
    if state.idle_timeout_seconds is not None and idle >= state.idle_timeout_seconds:
        return "idle"
    return None


def create_workspace(
    *, account: str, workspace: str, volume: str, stamp: Stamp, job_id: str | None, prev: str
) -> WorkspaceCreated:
    """The event recording a workspace's volume."""
    return WorkspaceCreated(
        event_id=stamp.event_id,
        account=account,
        at=stamp.at,
        actor=stamp.actor,
        workspace=workspace,
        volume=volume,
        job_id=job_id,
        prev_hash=prev,
    )


def delete_workspace(
    state: WorkspaceState, stamp: Stamp, *, job_id: str | None
) -> WorkspaceDeleted:
    """The event recording a workspace's removal."""
    if state.deleted_at is not None:
        raise InvalidTransition(state.name, "deleted", "delete")
    return WorkspaceDeleted(
        event_id=stamp.event_id,
        account=state.account,
        at=stamp.at,
        actor=stamp.actor,
        workspace=state.name,
        job_id=job_id,
        prev_hash=state.last_hash,
    )
