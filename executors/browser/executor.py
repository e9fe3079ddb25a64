"""The `browser` executor family: `browser.scrape` and `browser.action` over raw CDP, and
browser sessions (a browser context kept open between jobs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats.errors
import structlog
from nats.aio.client import Client as NATS

from engine.artifacts import ArtifactStore
from engine.embedded import read_info
from engine.jetstream import connect
from engine.settings import Settings
from executors.base import Failed, JobContext, Outcome, Succeeded
from executors.browser import sessions as session_jobs
from executors.browser.actions import StepSink, failed_action, run_actions
from executors.browser.chromium import find_chromium
from executors.browser.errors import (
    BrowserError,
    BrowserLost,
    PageCrashed,
    SessionLost,
    SessionNotFound,
)
from executors.browser.page import Page
from executors.browser.policy import UrlPolicy, parse_allow
from executors.browser.pool import BrowserPool
from executors.browser.remote import SessionControl
from executors.browser.scrape import StoreArtifact, artifact_reference, scrape
from executors.errors import BackendUnavailable
from schemas.common import JobError
from schemas.kinds import BrowserActionInput, BrowserScrapeInput, Input, validate_input
from schemas.sessions import SessionState
from schemas.state import JobState

log = structlog.get_logger("chaser.browser")

STOP_LOADING_TIMEOUT = 0.5


def failure_of(error: BrowserError) -> Failed:
    """The one translation of a browser error into a job failure."""
    return Failed(error=JobError(code=error.code, message=str(error)), retriable=error.retriable)


class LocalSession:
    """A browser session whose context lives in this process."""

    def __init__(self, account: str, session_id: str, page: Page) -> None:
        self.account = account
        self.id = session_id
        self.page = page
        self.lock = asyncio.Lock()
        self.closed = False


def browser_executor(settings: Settings) -> BrowserExecutor:
    """The executor for `chaser serve`; it refuses to start when no Chromium is installed."""

    def nats_url() -> str | None:
        info = read_info(settings.data_dir)
        return settings.nats_url or (info.url if info is not None else None)

    try:
        allow = parse_allow(settings.browser_allow)
    except ValueError as exc:
        raise ValueError(f"CHASER_BROWSER_ALLOW: {exc}") from exc
    return BrowserExecutor(
        find_chromium(settings.chromium),
        wanted=settings.chromium,
        policy=UrlPolicy(allow),
        data_dir=settings.data_dir / "browsers",
        pool_size=settings.browser_pool_size,
        max_pages=settings.browser_max_pages,
        prewarm=settings.browser_prewarm,
        nats_url=nats_url,
        replicas=settings.effective_replicas,
        artifact_max_age_days=settings.event_max_age_days,
    )


class BrowserExecutor:
    """Runs browser jobs on a pool of headless Chromium processes; hosts browser sessions."""

    family = "browser"
    kinds = frozenset({"browser.scrape", "browser.action"})

    def __init__(
        self,
        binary: str | None,
        *,
        policy: UrlPolicy,
        wanted: str | None = None,
        data_dir: Path,
        pool_size: int = 2,
        max_pages: int = 8,
        prewarm: bool = True,
        nats_url: Callable[[], str | None] = lambda: None,
        replicas: int = 1,
        artifact_max_age_days: float = 30.0,
    ) -> None:
        self.binary = binary
        self._wanted = wanted
        self.pool = BrowserPool(
            binary or "", size=pool_size, data_dir=data_dir, policy=policy, prewarm=prewarm
        )
        self._slots = asyncio.Semaphore(max_pages)
        self._nats_url = nats_url
        self._replicas = replicas
        self._artifact_age = artifact_max_age_days
        self.nc: NATS | None = None
        self.artifacts: ArtifactStore | None = None
        self.control: SessionControl | None = None
        self.sessions: dict[str, LocalSession] = {}

    async def start(self) -> None:
        """Connect to NATS (artifacts, remote sessions); browsers start on first use.

        Raises BackendUnavailable when no Chromium binary was found: the process then starts
        without the `browser` family and its kinds show `available: false`.
        """
        if self.binary is None:
            wanted = self._wanted or "chromium on PATH (set CHASER_CHROMIUM)"
            raise BackendUnavailable(f"no Chromium binary found: {wanted}")
        url = self._nats_url()
        if url is not None:
            self.nc = await connect(url, name="chaser-browser")
            self.artifacts = ArtifactStore(
                self.nc.jetstream(), replicas=self._replicas, max_age_days=self._artifact_age
            )
            self.control = SessionControl(self.nc, self._run_for_remote, self._owns)
        log.info("browser_executor_started", binary=self.pool.binary, pool_size=self.pool.size)

    async def stop(self) -> None:
        """Close every browser (sessions here end with them) and the NATS connection."""
        if self.control is not None:
            await self.control.stop()
        await self.pool.stop()
        if self.nc is not None:
            with contextlib.suppress(nats.errors.Error):
                await self.nc.close()

    async def run(self, ctx: JobContext) -> Outcome:
        """Run one attempt; every browser error becomes a failure here, in one place."""
        spec = ctx.input
        assert isinstance(spec, BrowserScrapeInput | BrowserActionInput)
        try:
            if spec.session_id is not None or getattr(spec, "keep_session", False):
                return await session_jobs.run_in_session(self, ctx)
            return await self._run_fresh(ctx)
        except BrowserError as exc:
            log.info("browser_job_failed", job_id=ctx.job_id, code=exc.code, error=str(exc))
            return failure_of(exc)

    async def _run_fresh(self, ctx: JobContext) -> Outcome:
        async with self._slots:
            page = await self.pool.page()
            try:
                return await self.work(page, ctx.state, ctx.input, ctx)
            except BrowserError as exc:
                raise await page.explain(exc) from exc
            finally:
                await self.pool.release(page)

    async def work(self, page: Page, job: JobState, spec: Input, sink: StepSink) -> Outcome:
        """A job's work on a page (fresh, or a session's)."""
        page.refused = None  # a refusal seen by an earlier job in a session is not this job's
        if isinstance(spec, BrowserScrapeInput):
            result = await scrape(page, spec, store=self._store_for(job))
            return Succeeded(result=result)
        assert isinstance(spec, BrowserActionInput)
        outcome = await run_actions(page, spec, sink)
        error = failed_action(spec, outcome)
        if error is not None:
            return Failed(error=error, result=outcome.result(page))
        return Succeeded(result=outcome.result(page))

    def _store_for(self, job: JobState) -> StoreArtifact | None:
        artifacts = self.artifacts
        if artifacts is None:
            return None

        async def store(base: str, data: bytes, content_type: str) -> dict[str, Any]:
            name = f"{base}-{job.attempt}.png"
            await artifacts.put(job.account, job.id, name, data, content_type)
            return artifact_reference(name, data, content_type, job.id)

        return store

    # -- sessions (SessionHost)

    async def open_session(self, state: SessionState) -> dict[str, Any]:
        """Open a browser context for a session and start answering for it."""
        page = await self.pool.page()
        session = LocalSession(state.account, state.id, page)
        self.sessions[state.id] = session
        if self.control is not None:
            await self.control.serve(state.id)
        log.info("browser_session_opened", session_id=state.id, browser=page.browser.name)
        return {"browser_context_id": page.context_id, "target_id": page.target_id, "url": page.url}

    async def close_session(self, state: SessionState) -> None:
        """Close a session's context; tolerates one already gone."""
        await self._forget(state.id)

    async def _forget(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if self.control is not None:
            await self.control.unserve(session_id)
        if session is not None:
            session.closed = True
            await self.pool.release(session.page)

    def _owns(self, account: str, session_id: str) -> bool:
        session = self.sessions.get(session_id)
        return session is not None and session.account == account

    def local_session(self, account: str, session_id: str) -> LocalSession | None:
        """The session if its context lives in this process (and belongs to the account)."""
        session = self.sessions.get(session_id)
        return session if session is not None and session.account == account else None

    async def run_in_local_session(
        self, session: LocalSession, job: JobState, spec: Input, sink: StepSink
    ) -> Outcome:
        """Run a job on a session's page, one job at a time per session."""
        async with session.lock:
            if session.closed:
                raise SessionNotFound(f"session {session.id} was terminated")
            if not session.page.usable:
                await self._forget(session.id)
                raise SessionLost(f"session {session.id}: its browser page is gone")
            try:
                return await self.work(session.page, job, spec, sink)
            except asyncio.CancelledError:
                with contextlib.suppress(BrowserError, TimeoutError):
                    await asyncio.wait_for(
                        session.page.call("Page.stopLoading"), STOP_LOADING_TIMEOUT
                    )
                raise
            except BrowserError as exc:
                if session.closed:
                    message = f"session {session.id} was terminated while the job ran"
                    raise SessionNotFound(message) from exc
                error = await session.page.explain(exc)
                if isinstance(error, BrowserLost | PageCrashed):
                    await self._forget(session.id)
                    raise SessionLost(f"session {session.id}: {error}") from exc
                raise error from exc

    async def _run_for_remote(self, session_id: str, job: JobState, sink: StepSink) -> Outcome:
        """A job sent by another process to a session that lives here."""
        session = self.sessions.get(session_id)
        try:
            if session is None or session.account != job.account:
                raise SessionNotFound(f"session {session_id} is not open here")
            spec = validate_input(job.kind, job.input)
            return await self.run_in_local_session(session, job, spec, sink)
        except BrowserError as exc:
            return failure_of(exc)
