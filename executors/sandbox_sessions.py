"""Sandbox sessions and workspace records, as the sandbox executor uses them: which live
session a workspace has, using a session from a job (SessionUsed), the options a session's
container is created with, and recording a workspace on first use (WorkspaceCreated)."""

from __future__ import annotations

import asyncio
from typing import Any

from engine import sessions as rules
from engine.aggregates import SessionService
from engine.errors import InvalidInput, NotFound
from engine.projection import ReadModel
from engine.sandbox import Limits, limit_problems, limits_for
from engine.settings import Settings
from executors.errors import JobProblem
from executors.sandbox_spec import volume_name
from schemas.sessions import (
    SESSION_ENDED,
    AnySessionEvent,
    AnyWorkspaceEvent,
    SessionState,
    SessionStatus,
    WorkspaceState,
)

OPEN_WAIT_SECONDS = 30.0
LIVE = (SessionStatus.OPENING, SessionStatus.OPEN)


class SessionGone(JobProblem):
    """The session is unknown, has ended, or is not a sandbox: `session_not_found`."""

    def __init__(self, session_id: str, why: str) -> None:
        super().__init__("session_not_found", f"session {session_id} {why}")


def live_session(read: ReadModel, account: str, workspace: str) -> SessionState | None:
    """The workspace's live sandbox session (the oldest, should there be a race), or None."""
    for state in read.sessions(account):
        if state.type == "sandbox" and state.workspace == workspace and state.status in LIVE:
            return state
    return None


def rival_session(read: ReadModel, state: SessionState) -> SessionState | None:
    """A live session opened on the same workspace before this one (which then may not)."""
    if state.workspace is None:
        return None
    first = live_session(read, state.account, state.workspace)
    if first is None or first.id == state.id:
        return None
    return first if (first.created_at, first.id) < (state.created_at, state.id) else None


def session_limits(settings: Settings, state: SessionState) -> Limits:
    """The container limits a session asks for in `options`, within the deployment maxima;
    raises InvalidInput naming the option."""
    options: dict[str, Any] = state.options
    unknown = sorted(set(options) - {"cpu", "memory_mb", "pids", "network"})
    if unknown:
        raise InvalidInput(f"options.{unknown[0]}", "not a sandbox session option")
    cpu, memory_mb, pids = options.get("cpu"), options.get("memory_mb"), options.get("pids")
    network = options.get("network")
    if network not in (None, "none", "bridge"):
        raise InvalidInput("options.network", "`none` or `bridge`")
    for name, value in (("cpu", cpu), ("memory_mb", memory_mb), ("pids", pids)):
        if value is not None and (not isinstance(value, int | float) or value <= 0):
            raise InvalidInput(f"options.{name}", "a positive number")
    problems = limit_problems(settings, cpu=cpu, memory_mb=memory_mb, pids=pids, prefix="options")
    if problems:
        raise problems[0]
    return limits_for(
        settings,
        ephemeral=state.ephemeral,
        cpu=float(cpu) if cpu is not None else None,
        memory_mb=int(memory_mb) if memory_mb is not None else None,
        pids=int(pids) if pids is not None else None,
        network=network,
    )


async def use_session(
    sessions: SessionService, account: str, session_id: str, *, job_id: str, actor: str
) -> SessionState:
    """Wait for the session to be open, then append SessionUsed for the job; JobProblem
    `session_not_found` when it is unknown, ended or not a sandbox."""
    await _opened(sessions, account, session_id)

    def decision(state: SessionState) -> AnySessionEvent | None:
        if state.status in SESSION_ENDED:
            raise SessionGone(session_id, "has ended")
        return rules.session_used(state, sessions.stamp(actor), job_id=job_id)

    used, _ = await sessions.change_session(account, session_id, decision)
    return used


async def _opened(sessions: SessionService, account: str, session_id: str) -> SessionState:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OPEN_WAIT_SECONDS
    while True:
        try:
            state = await sessions.session(account, session_id)
        except NotFound as exc:
            raise SessionGone(session_id, "was not found") from exc
        if state.type != "sandbox":
            raise SessionGone(session_id, "is not a sandbox session")
        if state.status in SESSION_ENDED:
            raise SessionGone(session_id, f"has ended ({state.status})")
        if state.status is SessionStatus.OPEN:
            return state
        if loop.time() > deadline:
            message = f"session {session_id} did not open within {OPEN_WAIT_SECONDS:.0f} s"
            raise JobProblem("session_not_ready", message, retriable=True)
        await asyncio.sleep(0.1)


async def record_workspace(
    sessions: SessionService, account: str, workspace: str, *, actor: str, job_id: str | None
) -> None:
    """Append WorkspaceCreated unless the log already has the workspace."""
    known = sessions.read_model.workspace(account, workspace)
    if known is not None and known.deleted_at is None:
        return

    def decision(state: WorkspaceState | None) -> AnyWorkspaceEvent | None:
        if state is not None and state.deleted_at is None:
            return None
        return rules.create_workspace(
            account=account,
            workspace=workspace,
            volume=volume_name(account, workspace),
            stamp=sessions.stamp(actor),
            job_id=job_id,
            prev=state.last_hash if state is not None else "",
        )

    await sessions.change_workspace(account, workspace, decision)
