"""Helpers for browser end-to-end tests: a `chaser serve` with the browser family, and a
client for one account that creates jobs and waits for them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from executors.browser.chromium import find_chromium
from tests.support.server import ChaserServer, kill_embedded_nats
from tests.support.site import Site

TERMINAL = {"succeeded", "failed", "cancelled"}

needs_chromium = pytest.mark.skipif(
    find_chromium() is None,
    reason="Chromium is not installed (Debian package `chromium`; `make services` installs it)",
)


def browser_env(allow: str | None = "127.0.0.1/32", **extra: str) -> dict[str, str]:
    """The environment of a server running the browser family (one browser, to stay light)."""
    env = {
        "CHASER_EXECUTOR_FAMILIES": "system,lifecycle,browser",
        "CHASER_BROWSER_POOL_SIZE": "1",
        **extra,
    }
    if allow is not None:
        env["CHASER_BROWSER_ALLOW"] = allow
    return env


def start_server(data_dir: Path, env: dict[str, str]) -> ChaserServer:
    """Start a server and return it (stop it with `stop_server`)."""
    return ChaserServer(data_dir, env=env).start()


def stop_server(server: ChaserServer) -> None:
    """Stop a server; clean up its embedded NATS if it had to be killed."""
    code = server.stop(timeout=20)
    if code is not None and code < 0:
        kill_embedded_nats(server.data_dir)


def browser_pids(server: ChaserServer) -> list[int]:
    """Chromium browser processes (not their renderers) started by this server."""
    marker = f"--user-data-dir={server.data_dir / 'browsers'}"
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        text = [a.decode(errors="replace") for a in args]
        if any(a.startswith(marker) for a in text) and not any(
            a.startswith("--type=") for a in text
        ):
            pids.append(int(entry.name))
    return pids


class Account:
    """One account's view of the API."""

    def __init__(self, server: ChaserServer, account: str) -> None:
        self.server = server
        self.account = account
        self.key = server.create_key(account)
        self.http = server.client(self.key)

    def create(self, kind: str, job_input: dict[str, Any], **body: Any) -> dict[str, Any]:
        """Create a job; return it."""
        response = self.http.post("/v1/jobs", json={"kind": kind, "input": job_input, **body})
        assert response.status_code == 201, response.text
        job: dict[str, Any] = response.json()
        return job

    def get(self, job_id: str) -> dict[str, Any]:
        """One job."""
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job: dict[str, Any] = response.json()
        return job

    def wait(self, job_id: str, statuses: set[str] = TERMINAL, timeout: float = 30) -> Any:
        """Poll until the job's status is one of `statuses`."""
        deadline = time.monotonic() + timeout
        job = self.get(job_id)
        while job["status"] not in statuses:
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached {statuses}: {job}")
            time.sleep(0.02)
            job = self.get(job_id)
        return job

    def run(self, kind: str, job_input: dict[str, Any], **body: Any) -> Any:
        """Create a job and wait until it finishes."""
        return self.wait(self.create(kind, job_input, **body)["id"])

    def scrape(self, **job_input: Any) -> Any:
        """Run a browser.scrape job to its end."""
        return self.run("browser.scrape", job_input)

    def actions(self, *actions: dict[str, Any], **job_input: Any) -> Any:
        """Run a browser.action job to its end."""
        return self.run("browser.action", {"actions": list(actions), **job_input})

    def session(self, session_id: str) -> Any:
        """GET /v1/sessions/{id}."""
        response = self.http.get(f"/v1/sessions/{session_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def open_session(self, **body: Any) -> Any:
        """POST /v1/sessions for a browser; waits until it is open."""
        response = self.http.post("/v1/sessions", json={"type": "browser", **body})
        assert response.status_code == 201, response.text
        session_id = response.json()["id"]
        deadline = time.monotonic() + 20
        while (state := self.session(session_id))["status"] == "opening":
            assert time.monotonic() < deadline, f"session never opened: {state}"
            time.sleep(0.02)
        assert state["status"] == "open", state
        return state

    def close(self) -> None:
        """Close the HTTP client."""
        self.http.close()


def unique(prefix: str) -> str:
    """A fresh account name."""
    return f"{prefix}-{os.urandom(4).hex()}"


def _module_name(request: pytest.FixtureRequest) -> str:
    """`test_browser_scrape` → `browser-scrape`: names a module's server and accounts."""
    return request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_").replace("_", "-")


# Module fixtures shared by the browser end-to-end modules: import them into a test module
# (`from tests.support.browser import acme, server, site`) to use them there.


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    """The local website."""
    web = Site().start()
    try:
        yield web
    finally:
        web.stop()


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ChaserServer]:
    """A server with the browser family, allowed to reach 127.0.0.1."""
    running = start_server(tmp_path_factory.mktemp(_module_name(request)) / "data", browser_env())
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def acme(request: pytest.FixtureRequest, server: ChaserServer) -> Iterator[Account]:
    """One account on the module's server."""
    account = Account(server, unique(_module_name(request)))
    try:
        yield account
    finally:
        account.close()
