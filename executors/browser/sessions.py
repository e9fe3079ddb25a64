"""Jobs that run in a browser session: find it (waiting while it opens), run locally or in the
process that holds it, and record the use (the session's current URL) in the log."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import structlog
from msgspec.structs import replace

from engine import sessions as rules
from engine.aggregates import SessionService
from engine.errors import EngineError, InvalidTransition, NotFound
from executors.base import Failed, JobContext, Outcome, Succeeded
from executors.browser.errors import SessionLost, SessionNotFound
from executors.browser.remote import run_remote
from schemas.kinds import BrowserActionInput, BrowserScrapeInput
from schemas.sessions import SESSION_ENDED, AnySessionEvent, SessionState, SessionStatus

if TYPE_CHECKING:
    from executors.browser.executor import BrowserExecutor

log = structlog.get_logger("chaser.browser")

OPEN_WAIT = 30.0
POLL = 0.05
REMOTE_MARGIN = 10.0


async def run_in_session(executor: BrowserExecutor, ctx: JobContext) -> Outcome:
    """Run the job in its session (opening one first for `keep_session` without an id)."""
    spec = ctx.input
    assert isinstance(spec, BrowserScrapeInput | BrowserActionInput)
    sessions = ctx.sessions
    if sessions is None:
        raise SessionNotFound("browser sessions are not available in this process")
    session_id = spec.session_id
    if session_id is None:
        opened = await sessions.open(ctx.account, ctx.executor_id, session_type="browser")
        session_id = opened.id
        log.info("browser_session_kept", job_id=ctx.job_id, session_id=session_id)
    await wait_open(sessions, ctx.account, session_id)
    try:
        outcome = await _run(executor, ctx, session_id)
    except SessionLost as exc:
        await _record_lost(sessions, ctx, session_id, str(exc))
        raise
    url = outcome.result.get("url") if isinstance(outcome.result, dict) else None
    await _record_use(sessions, ctx, session_id, url)
    return _with_session(outcome, session_id)


async def _run(executor: BrowserExecutor, ctx: JobContext, session_id: str) -> Outcome:
    local = executor.local_session(ctx.account, session_id)
    if local is not None:
        return await executor.run_in_local_session(local, ctx.state, ctx.input, ctx)
    if executor.nc is None:
        raise SessionNotFound(f"session {session_id} lives in another process and NATS is off")
    timeout_ms = getattr(ctx.input, "timeout_ms", None) or 300_000
    return await run_remote(
        executor.nc, session_id, ctx.state, ctx.step, timeout=timeout_ms / 1000 + REMOTE_MARGIN
    )


def _with_session(outcome: Outcome, session_id: str) -> Outcome:
    result: Any = outcome.result
    if isinstance(result, dict):
        result = {**result, "session_id": session_id}
    elif result is None:
        result = {"session_id": session_id}
    if isinstance(outcome, Succeeded):
        return Succeeded(result=result)
    return replace(outcome, result=result) if isinstance(outcome, Failed) else outcome


async def wait_open(sessions: SessionService, account: str, session_id: str) -> SessionState:
    """The session once it is open; SessionNotFound if it is unknown, ended or not a browser."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + OPEN_WAIT
    while True:
        try:
            state = await sessions.session(account, session_id)
        except NotFound as exc:
            raise SessionNotFound(f"session {session_id} not found") from exc
        if state.type != "browser":
            raise SessionNotFound(f"session {session_id} is a {state.type} session, not a browser")
        if state.status in SESSION_ENDED:
            raise SessionNotFound(f"session {session_id} is {state.status}")
        if state.status is SessionStatus.OPEN:
            return state
        if loop.time() > deadline:
            raise SessionNotFound(f"session {session_id} did not open within {OPEN_WAIT:.0f} s")
        await asyncio.sleep(POLL)


async def _record_use(
    sessions: SessionService, ctx: JobContext, session_id: str, url: str | None
) -> None:
    """Append SessionUsed with the page's URL (skipped when the session ended meanwhile)."""
    detail = {"url": url} if url else {}

    def decision(state: SessionState) -> AnySessionEvent | None:
        if state.status is not SessionStatus.OPEN:
            return None
        stamp = sessions.stamp(ctx.executor_id)
        return rules.session_used(state, stamp, job_id=ctx.job_id, detail=detail)

    try:
        await sessions.change_session(ctx.account, session_id, decision)
    except (EngineError, InvalidTransition) as exc:
        log.warning("session_use_not_recorded", session_id=session_id, error=str(exc))


async def _record_lost(
    sessions: SessionService, ctx: JobContext, session_id: str, message: str
) -> None:
    """The session's browser is gone: the session failed (it cannot come back)."""

    def decision(state: SessionState) -> AnySessionEvent | None:
        if state.status in SESSION_ENDED:
            return None
        stamp = sessions.stamp(ctx.executor_id)
        return rules.fail_session(state, stamp, code="session_lost", message=message)

    try:
        await sessions.change_session(ctx.account, session_id, decision)
    except (EngineError, InvalidTransition) as exc:
        log.warning("session_loss_not_recorded", session_id=session_id, error=str(exc))
