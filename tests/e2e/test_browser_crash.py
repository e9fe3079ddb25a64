"""A browser killed under a running job: the job fails retriably, the browser is replaced and
the retry succeeds; sessions that lived in the dead browser are gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

from tests.support.browser import (
    TERMINAL,
    Account,
    browser_env,
    browser_pids,
    needs_chromium,
    start_server,
    stop_server,
    unique,
)
from tests.support.server import ChaserServer
from tests.support.site import Site

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """A server with one browser, allowed to reach 127.0.0.1."""
    server = start_server(tmp_path_factory.mktemp("browser-crash") / "data", browser_env())
    try:
        yield server
    finally:
        stop_server(server)


def wait_for(probe, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll until `probe()` is truthy."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    return value


def kill_browsers(server: ChaserServer) -> list[int]:
    """SIGKILL every browser process of the server."""
    pids = wait_for(lambda: browser_pids(server), what="a browser process")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids


def test_browser_killed_mid_job_fails_retriably_and_the_retry_succeeds(
    server: ChaserServer, site: Site
) -> None:
    acme = Account(server, unique("crash"))
    try:
        warm = acme.scrape(url=site.url("/"), selector="h1")  # the browser is up
        assert warm["status"] == "succeeded", warm
        asked = site.requests.count("/slow?ms=3000")
        job = acme.create(
            "browser.scrape",
            {"url": site.url("/slow?ms=3000"), "selector": "h1"},
            max_attempts=2,
            backoff_ms=50,
        )
        wait_for(lambda: site.requests.count("/slow?ms=3000") > asked, what="the slow request")
        killed = kill_browsers(server)

        # The failed attempt is terminal for a moment before the retry is scheduled.
        final = wait_for(
            lambda: (j := acme.get(job["id"]))["attempt"] == 2 and j["status"] in TERMINAL and j,
            timeout=60,
            what="the second attempt to finish",
        )
        assert final["status"] == "succeeded", (final["attempt"], final["error"])
        assert final["attempt"] == 2
        assert final["result"]["matches"] == [{"text": "slow"}]
        assert not set(browser_pids(server)) & set(killed)  # a new browser served the retry
    finally:
        acme.close()


def test_without_retries_the_failure_is_marked_retriable(server: ChaserServer, site: Site) -> None:
    acme = Account(server, unique("crash1"))
    try:
        asked = site.requests.count("/slow?ms=2500")
        job = acme.create("browser.scrape", {"url": site.url("/slow?ms=2500")})
        wait_for(lambda: site.requests.count("/slow?ms=2500") > asked, what="the slow request")
        kill_browsers(server)
        final = acme.wait(job["id"], timeout=30)
        assert final["status"] == "failed"
        assert final["error"]["code"] == "browser_lost"
        retried = acme.http.post(f"/v1/jobs/{job['id']}/retry")
        assert retried.status_code == 200, retried.text
        assert acme.wait(job["id"], timeout=30)["status"] == "succeeded"
    finally:
        acme.close()


def test_a_session_in_a_killed_browser_is_lost(server: ChaserServer, site: Site) -> None:
    acme = Account(server, unique("crash2"))
    try:
        sid = acme.open_session()["id"]
        kill_browsers(server)
        job = acme.actions(
            {"method": "Runtime.evaluate", "params": {"expression": "1"}}, session_id=sid
        )
        assert job["status"] == "failed"
        assert job["error"]["code"] == "session_not_found"
        state = wait_for(lambda: (s := acme.session(sid))["status"] == "failed" and s)
        assert "session_lost" in state["end_reason"]
        assert acme.scrape(url=site.url("/"))["status"] == "succeeded"
    finally:
        acme.close()
