"""Integration tier: real `chaser serve` processes on a real (embedded) nats-server.

Fixtures here start servers and stop them even when a test fails. The helpers they hand out
poll the API (or the event log, read straight from JetStream) for a condition with a
deadline; nothing sleeps blindly. Helpers reach tests as fixtures (`poll`, `stays`, `tenant`,
`tenants`, `make_server`, `start_executor`), never by importing this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
import pytest

from tests.support.server import ChaserServer, kill_embedded_nats

T = TypeVar("T")

POLL = 0.05
DEFAULT_WAIT = 20.0
# Only `system.echo` runs in these tests; kinds of other families (e.g. sandbox.exec) stay
# queued, which several tests rely on. Pinned so a new default family cannot change that.
ENGINE_ENV = {"CHASER_EXECUTOR_FAMILIES": "system"}


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = DEFAULT_WAIT, what: str = "condition"
) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(POLL)


def assert_stays(check: Callable[[], bool], *, seconds: float, what: str) -> None:
    """Assert `check` holds at every poll for `seconds`: a stability check, not a wait."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert check(), f"{what} stopped holding"
        time.sleep(POLL * 2)
    assert check(), f"{what} stopped holding"


def unique_account(prefix: str = "acct") -> str:
    """A fresh, subject-safe account id, so tests sharing a server never see each other."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def nats_url(server: ChaserServer) -> str:
    """Client URL of the embedded nats-server of a server's data directory."""
    info = json.loads((server.data_dir / "nats.json").read_text())
    url: str = info["url"]
    return url


async def _job_events(url: str, account: str, job_id: str) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        out: list[dict[str, Any]] = []
        names = [info.config.name or "" for info in await js.streams_info()]
        for name in sorted(n for n in names if n.startswith("CHASER_EVENTS_")):
            seq = 1
            while True:
                try:
                    msg = await js.get_msg(
                        name, seq=seq, subject=f"chaser.*.{account}.job.{job_id}.*", next=True
                    )
                except nats.js.errors.NotFoundError:
                    break
                assert msg.seq is not None and msg.data is not None
                event = json.loads(msg.data)
                event["_stream"], event["_seq"], event["_subject"] = name, msg.seq, msg.subject
                event["_digest"] = hashlib.sha256(msg.data).hexdigest()
                out.append(event)
                seq = msg.seq + 1
        return sorted(out, key=lambda e: (e["_stream"], e["_seq"]))
    finally:
        await nc.close()


async def _subject_counts(url: str, stream_prefix: str, subjects: str) -> dict[str, int]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        counts: dict[str, int] = {}
        for info in await js.streams_info():
            name = info.config.name or ""
            if not name.startswith(stream_prefix):
                continue
            detail = await js.stream_info(name, subjects_filter=subjects)
            for subject, count in (detail.state.subjects or {}).items():
                counts[f"{name}:{subject}"] = count
        return counts
    finally:
        await nc.close()


class Jobs:
    """The Jobs API of one server as seen by one key (and account), plus the account's log."""

    def __init__(self, server: ChaserServer, key: str, account: str, header: bool = False):
        self.server = server
        self.key = key
        self.account = account
        self.http = server.client(key, account if header else None)

    # -- the API

    def create(self, kind: str = "system.echo", *, expect: int = 201, **body: Any) -> Any:
        """POST /v1/jobs, check the status code, return the body."""
        response = self.http.post("/v1/jobs", json={"kind": kind, **body})
        assert response.status_code == expect, response.text
        return response.json()

    def echo(self, **input: Any) -> Any:
        """Create a system.echo job with this input."""
        return self.create("system.echo", input=input)

    def get(self, job_id: str) -> Any:
        """GET one job, which must exist."""
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def cancel(self, job_id: str) -> httpx.Response:
        """POST /v1/jobs/{id}/cancel."""
        return self.http.post(f"/v1/jobs/{job_id}/cancel")

    def retry(self, job_id: str) -> httpx.Response:
        """POST /v1/jobs/{id}/retry."""
        return self.http.post(f"/v1/jobs/{job_id}/retry")

    def list(self, **params: Any) -> Any:
        """GET /v1/jobs with query parameters; the page."""
        response = self.http.get("/v1/jobs", params=params)
        assert response.status_code == 200, response.text
        return response.json()

    def all(self, **params: Any) -> list[Any]:
        """Every job of the account matching the filters, following cursors."""
        items: list[Any] = []
        cursor: str | None = None
        while True:
            query = dict(params, limit=500)
            if cursor:
                query["cursor"] = cursor
            page = self.list(**query)
            items += page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return items

    def wait(
        self,
        job_id: str,
        condition: Callable[[Any], bool],
        *,
        timeout: float = DEFAULT_WAIT,
        what: str = "condition",
    ) -> Any:
        """Poll GET until `condition(job)` holds; the job at that moment."""
        last: list[Any] = [None]

        def probe() -> Any:
            last[0] = self.get(job_id)
            return last[0] if condition(last[0]) else None

        try:
            return wait_until(probe, timeout=timeout, what=f"job {job_id}: {what}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {last[0]}") from None

    def wait_status(self, job_id: str, *statuses: str, timeout: float = DEFAULT_WAIT) -> Any:
        """Poll until the job has one of `statuses`."""
        return self.wait(
            job_id,
            lambda job: job["status"] in statuses,
            timeout=timeout,
            what=f"status in {statuses}",
        )

    # -- the log, read straight from JetStream (the server's embedded NATS must be up)

    def events(self, job_id: str) -> list[Any]:
        """Every stored event of one of this account's jobs, oldest first."""
        return asyncio.run(_job_events(nats_url(self.server), self.account, job_id))

    def event_count(self) -> int:
        """How many events of this account the event streams hold."""
        counts = asyncio.run(
            _subject_counts(nats_url(self.server), "CHASER_EVENTS_", f"chaser.*.{self.account}.>")
        )
        return sum(counts.values())

    def event_streams(self) -> set[str]:
        """The event streams (partitions) holding this account's events."""
        counts = asyncio.run(
            _subject_counts(nats_url(self.server), "CHASER_EVENTS_", f"chaser.*.{self.account}.>")
        )
        return {name.split(":", 1)[0] for name in counts}

    def work_items(self) -> int:
        """This account's messages still in the work queue (released, not yet acknowledged)."""
        counts = asyncio.run(_subject_counts(nats_url(self.server), "CHASER_WORK", "chaser.work.>"))
        # Work subjects are `chaser.work.<kind>.<account>`, and kinds hold a dot themselves.
        return sum(n for name, n in counts.items() if name.endswith(f".{self.account}"))

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def _shutdown(server: ChaserServer) -> None:
    server.stop()
    kill_embedded_nats(server.data_dir)


@pytest.fixture
def poll() -> Callable[..., Any]:
    """`poll(probe, timeout=, what=)`: wait until `probe()` is truthy, return its value."""
    return wait_until


@pytest.fixture
def stays() -> Callable[..., None]:
    """`stays(check, seconds=, what=)`: assert a condition keeps holding for a while."""
    return assert_stays


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """One server (API, dispatcher, system executors) for every test that never stops it."""
    server = ChaserServer(tmp_path_factory.mktemp("shared") / "data", env=dict(ENGINE_ENV))
    try:
        server.start()
        yield server
    finally:
        _shutdown(server)


@pytest.fixture
def tenants(request: pytest.FixtureRequest) -> Iterator[Callable[..., Jobs]]:
    """`tenants(account=None, server=None, header=False)`: a fresh account (a unique id when
    none is given) with its own key, on the shared server unless another is given."""
    made: list[Jobs] = []

    def factory(
        account: str | None = None, *, server: ChaserServer | None = None, header: bool = False
    ) -> Jobs:
        account = account or unique_account()
        server = server or request.getfixturevalue("shared_server")
        jobs = Jobs(server, server.create_key(account), account, header=header)
        made.append(jobs)
        return jobs

    try:
        yield factory
    finally:
        for jobs in made:
            jobs.close()


@pytest.fixture
def tenant(tenants: Callable[..., Jobs]) -> Jobs:
    """A fresh account with its own key on the shared server."""
    return tenants()


@pytest.fixture(scope="module")
def module_tenant(shared_server: ChaserServer) -> Iterator[Jobs]:
    """A fresh account on the shared server, kept for a whole test module."""
    account = unique_account()
    jobs = Jobs(shared_server, shared_server.create_key(account), account)
    try:
        yield jobs
    finally:
        jobs.close()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., ChaserServer]]:
    """`make_server(name="data", env=None, start=True)`: a dedicated server on its own data
    directory. Afterwards every one is stopped (newest first) and embedded NATS left behind
    by a killed one is ended."""
    servers: list[ChaserServer] = []

    def factory(
        name: str = "data", *, env: dict[str, str] | None = None, start: bool = True
    ) -> ChaserServer:
        server = ChaserServer(tmp_path / name, env={**ENGINE_ENV, **(env or {})})
        servers.append(server)
        return server.start() if start else server

    try:
        yield factory
    finally:
        for server in reversed(servers):
            _shutdown(server)


def log_has(server: ChaserServer, event: str) -> bool:
    """Whether the server's JSON log has a line whose `event` is this name."""
    if not server.log_path.exists():
        return False
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            if json.loads(line).get("event") == event:
                return True
        except (ValueError, AttributeError):
            continue
    return False


@pytest.fixture
def start_executor(
    make_server: Callable[..., ChaserServer],
) -> Callable[..., ChaserServer]:
    """`start_executor(name, url, env=None)`: an executor-only process joining NATS at `url`,
    returned once its pool has started (it has no HTTP API to poll, so its log is read)."""

    def factory(name: str, url: str, env: dict[str, str] | None = None) -> ChaserServer:
        server = make_server(
            name, env={"CHASER_NATS_URL": url, "CHASER_ROLES": "executor", **(env or {})}
        )

        def up() -> bool:
            assert server.process is not None
            if server.process.poll() is not None:
                raise AssertionError(
                    f"executor process exited with {server.process.returncode}:\n"
                    + server.log_path.read_text(errors="replace")[-3000:]
                )
            return log_has(server, "executor_started")

        wait_until(up, timeout=30, what=f"{name}: executor_started in its log")
        return server

    return factory


@pytest.fixture
def embedded_url() -> Callable[[ChaserServer], str]:
    """`embedded_url(server)`: the URL of a server's embedded nats-server."""
    return nats_url
