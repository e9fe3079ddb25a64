"""A session's context lives in one executor process; a job taken by another process runs
there over NATS (`chaser.sessionctl.<session_id>`): steps stream back, cancel reaches it, and
a session whose owner is gone is reported lost."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client as NATS

from executors.base import StepReport, Succeeded
from executors.browser.chromium import find_chromium
from executors.browser.errors import SessionLost, SessionNotFound
from executors.browser.executor import BrowserExecutor
from executors.browser.policy import UrlPolicy, parse_allow
from executors.browser.remote import run_remote
from schemas.common import JobStatus
from schemas.sessions import SessionState, SessionStatus
from schemas.state import JobState
from tests.support.browser import needs_chromium
from tests.support.site import Site

pytestmark = needs_chromium
NOW = datetime.now(UTC)


@pytest.fixture
def site() -> Iterator[Site]:
    """The local website."""
    site = Site().start()
    try:
        yield site
    finally:
        site.stop()


@pytest.fixture
async def owner(nats_url: str, tmp_path: Path) -> AsyncIterator[BrowserExecutor]:
    """The process holding the session (an executor with its own NATS connection)."""
    executor = BrowserExecutor(
        find_chromium(),
        policy=UrlPolicy(parse_allow(["127.0.0.1/32"])),
        data_dir=tmp_path / "browsers",
        pool_size=1,
        nats_url=lambda: nats_url,
    )
    await executor.start()
    try:
        yield executor
    finally:
        await executor.stop()


@pytest.fixture
async def other(nats_url: str) -> AsyncIterator[NATS]:
    """Another process's NATS connection."""
    nc = await nats.connect(nats_url)
    try:
        yield nc
    finally:
        await nc.close()


def session(account: str = "acme", session_id: str = "ses_remote") -> SessionState:
    """An open browser session as the keeper hands it over."""
    return SessionState(
        id=session_id,
        account=account,
        type="browser",
        status=SessionStatus.OPENING,
        workspace=None,
        image=None,
        ephemeral=False,
        ttl_seconds=None,
        idle_timeout_seconds=None,
        options={},
        created_at=NOW,
        updated_at=NOW,
    )


def job(job_input: dict[str, Any], account: str = "acme", kind: str = "browser.action") -> JobState:
    """A running job."""
    return JobState(
        id=f"job_{time.monotonic_ns()}",
        account=account,
        kind=kind,
        input=job_input,
        status=JobStatus.RUNNING,
        attempt=1,
        max_attempts=1,
        run_at=None,
        idempotency_key=None,
        created_at=NOW,
        updated_at=NOW,
    )


async def test_steps_and_outcome_come_back(owner: BrowserExecutor, other: NATS, site: Site) -> None:
    await owner.open_session(session())
    steps: list[StepReport] = []

    async def record(report: StepReport) -> None:
        steps.append(report)

    actions = [
        {
            "method": "Page.navigate",
            "params": {"url": site.url("/")},
            "wait_for": "Page.loadEventFired",
        },
        {
            "method": "Runtime.evaluate",
            "params": {"expression": "document.title", "returnByValue": True},
        },
    ]
    spec = {"session_id": "ses_remote", "actions": actions}
    outcome = await run_remote(other, "ses_remote", job(spec), record, timeout=30)
    assert isinstance(outcome, Succeeded), outcome
    assert [s.name for s in steps] == ["1:Page.navigate", "2:Runtime.evaluate"]
    assert outcome.result["results"][1]["result"]["value"] == "Fixture page"
    assert outcome.result["url"] == site.url("/")

    scrape = {"session_id": "ses_remote", "url": site.url("/final"), "selector": "h1"}
    outcome = await run_remote(
        other, "ses_remote", job(scrape, kind="browser.scrape"), record, timeout=30
    )
    assert isinstance(outcome, Succeeded) and outcome.result["matches"] == [{"text": "final"}]

    with pytest.raises(SessionNotFound, match="not open here"):
        await run_remote(other, "ses_remote", job(spec, account="intruder"), record, timeout=30)


async def test_cancel_reaches_the_owner(owner: BrowserExecutor, other: NATS, site: Site) -> None:
    await owner.open_session(session())
    spec = {
        "session_id": "ses_remote",
        "actions": [{"method": "Page.navigate", "params": {"url": site.url("/hang")}}],
    }

    async def record(report: StepReport) -> None:
        pass

    task = asyncio.create_task(run_remote(other, "ses_remote", job(spec), record, timeout=60))
    deadline = time.monotonic() + 10
    while "/hang" not in site.requests and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    while not site.hang_closed and time.monotonic() < cancelled_at + 5:
        await asyncio.sleep(0.01)
    assert site.hang_closed and site.hang_closed[0] - cancelled_at < 1.0
    # The owner stopped the navigation; its session still works.
    quick = {
        "session_id": "ses_remote",
        "actions": [{"method": "Runtime.evaluate", "params": {"expression": "1"}}],
    }
    outcome = await run_remote(other, "ses_remote", job(quick), record, timeout=30)
    assert isinstance(outcome, Succeeded), outcome


async def test_a_gone_owner_means_the_session_is_lost(owner: BrowserExecutor, other: NATS) -> None:
    state = session(session_id="ses_gone")
    await owner.open_session(state)
    await owner.close_session(state)

    async def record(report: StepReport) -> None:
        pass

    spec = {
        "session_id": "ses_gone",
        "actions": [{"method": "Runtime.evaluate", "params": {"expression": "1"}}],
    }
    with pytest.raises(SessionLost):
        await run_remote(other, "ses_gone", job(spec), record, timeout=30)
