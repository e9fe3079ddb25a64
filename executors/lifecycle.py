"""Lifecycle kinds: `session.terminate`, `session.bulk_terminate`, `workspace.delete`,
`workspace.bulk_delete`. Sessions end by events their owners react to; workspaces are removed
through the backend that stores them (Docker volumes)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, Protocol

from engine import sessions as rules
from engine.aggregates import SessionService
from engine.errors import EngineError, NotFound
from executors.base import Failed, JobContext, Outcome, Succeeded
from schemas.common import JobError, JobStatus
from schemas.kinds import (
    SessionBulkTerminateInput,
    SessionTerminateInput,
    WorkspaceBulkDeleteInput,
    WorkspaceDeleteInput,
)
from schemas.sessions import SESSION_ENDED, AnySessionEvent, SessionState

BUSY_WAIT_SECONDS = 30.0


class WorkspaceBackendError(Exception):
    """A backend could not delete a workspace; `code` becomes the job's error code."""

    code = "workspace_backend_error"


class WorkspaceBusy(WorkspaceBackendError):
    """Something live (a session's container) holds the workspace."""

    code = "workspace_busy"


class WorkspaceBackend(Protocol):
    """Where workspaces live (Docker volumes)."""

    async def delete_workspace(self, account: str, workspace: str) -> None:
        """Remove a workspace's storage; must tolerate one already gone."""


class LifecycleExecutor:
    """Ends sessions and deletes workspaces."""

    family = "lifecycle"
    kinds = frozenset(
        {"session.terminate", "session.bulk_terminate", "workspace.delete", "workspace.bulk_delete"}
    )

    def __init__(self, workspaces: WorkspaceBackend | None = None) -> None:
        self._workspaces = workspaces

    async def start(self) -> None:
        """Nothing to acquire."""

    async def stop(self) -> None:
        """Release the workspace backend's connection, if it keeps one."""
        close = getattr(self._workspaces, "close", None)
        if close is not None:
            await close()

    async def run(self, ctx: JobContext) -> Outcome:
        """Dispatch on the input's type."""
        assert ctx.sessions is not None
        match ctx.input:
            case SessionTerminateInput(session_id=session_id):
                outcome = await terminate(ctx.sessions, ctx, session_id)
                if outcome != "terminated":
                    error = JobError(code="session_not_found", message=f"session {session_id}")
                    return Failed(error=error, result={"session_id": session_id})
                return Succeeded(result={"session_id": session_id, "terminated": True})
            case SessionBulkTerminateInput():
                return Succeeded(result=await bulk_terminate(ctx.sessions, ctx, ctx.input))
            case WorkspaceDeleteInput(workspace=name):
                problem = await self._delete(ctx, name)
                if problem is not None:
                    return Failed(error=problem, result={"workspace": name})
                return Succeeded(result={"workspace": name, "deleted": True})
            case WorkspaceBulkDeleteInput():
                return Succeeded(result=await self._bulk_delete(ctx, ctx.input))
            case _:
                error = JobError(code="unsupported_kind", message=ctx.state.kind)
                return Failed(error=error)

    async def _delete(self, ctx: JobContext, name: str) -> JobError | None:
        """Delete one workspace once no running job uses it; an error value when it fails."""
        assert ctx.sessions is not None
        sessions = ctx.sessions
        known = sessions.read_model.workspace(ctx.account, name)
        if known is None:
            known = await sessions.load_workspace(ctx.account, name)
        if known is None or known.deleted_at is not None:
            return JobError(code="workspace_not_found", message=f"workspace {name}")
        if not await _wait_until_idle(sessions, ctx, name):
            return JobError(
                code="workspace_busy",
                message=f"workspace {name} was still in use after {BUSY_WAIT_SECONDS:.0f} s",
            )
        if self._workspaces is None:
            return JobError(code="workspace_backend_unavailable", message="no Docker here")
        try:
            await self._workspaces.delete_workspace(ctx.account, name)
        except WorkspaceBackendError as exc:
            return JobError(code=exc.code, message=str(exc))
        stamp = sessions.stamp(ctx.executor_id)
        await sessions.change_workspace(
            ctx.account,
            name,
            lambda ws: (
                rules.delete_workspace(ws, stamp, job_id=ctx.job_id)
                if ws is not None and ws.deleted_at is None
                else None
            ),
        )
        return None

    async def _bulk_delete(self, ctx: JobContext, spec: WorkspaceBulkDeleteInput) -> dict[str, Any]:
        assert ctx.sessions is not None
        names = spec.workspaces
        if names is None:
            names = [ws.name for ws in ctx.sessions.read_model.workspaces(ctx.account)]
        results: dict[str, Any] = {"deleted": [], "not_found": [], "failed": []}
        for name in names:
            problem = await self._delete(ctx, name)
            if problem is None:
                results["deleted"].append(name)
            elif problem.code == "workspace_not_found":
                results["not_found"].append(name)
            else:
                results["failed"].append(
                    {"workspace": name, "error": problem.code, "message": problem.message}
                )
        return results


async def _wait_until_idle(sessions: SessionService, ctx: JobContext, name: str) -> bool:
    """Wait (bounded) until no other job of the account runs on the workspace."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + BUSY_WAIT_SECONDS
    while True:
        busy = [
            job
            for job in sessions.read_model.jobs()
            if job.account == ctx.account
            and job.id != ctx.job_id
            and job.status is JobStatus.RUNNING
            and job.input.get("workspace") == name
        ]
        if not busy:
            return True
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.2)


async def terminate(sessions: SessionService, ctx: JobContext, session_id: str) -> str:
    """End one session: `terminated`, `not_found` (unknown or already ended)."""

    def decision(state: SessionState) -> AnySessionEvent | None:
        if state.status in SESSION_ENDED:
            return None
        return rules.terminate_session(state, sessions.stamp(ctx.executor_id), job_id=ctx.job_id)

    try:
        _, rec = await sessions.change_session(ctx.account, session_id, decision)
    except NotFound:
        return "not_found"
    return "terminated" if rec is not None else "not_found"


async def bulk_terminate(
    sessions: SessionService, ctx: JobContext, spec: SessionBulkTerminateInput
) -> dict[str, Any]:
    """End listed, all, or idle sessions; report each one's outcome."""
    now = datetime.now(UTC)
    if spec.session_ids is not None:
        targets = spec.session_ids
    else:
        live = [
            s for s in sessions.read_model.sessions(ctx.account) if s.status not in SESSION_ENDED
        ]
        if spec.idle_for_ms is not None:
            live = [
                s
                for s in live
                if (now - (s.last_used_at or s.created_at)).total_seconds() * 1000
                >= spec.idle_for_ms
            ]
        targets = [s.id for s in live]
    result: dict[str, Any] = {"terminated": [], "not_found": [], "failed": []}
    for session_id in targets:
        try:
            outcome = await terminate(sessions, ctx, session_id)
        except EngineError as exc:
            result["failed"].append({"session_id": session_id, "error": str(exc)})
            continue
        result[outcome].append(session_id)
    return result
