"""The URL policy end to end: what the browser may not reach, however it is asked to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    Account,
    browser_env,
    needs_chromium,
    start_server,
    stop_server,
    unique,
)
from tests.support.site import Site

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def allowed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    """An account on a server allowed to reach 127.0.0.1 (and nothing else non-public)."""
    server = start_server(tmp_path_factory.mktemp("browser-allowed") / "data", browser_env())
    account = Account(server, unique("allowed"))
    try:
        yield account
    finally:
        account.close()
        stop_server(server)


@pytest.fixture(scope="module")
def default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    """An account on a server with the default policy (no CHASER_BROWSER_ALLOW)."""
    server = start_server(
        tmp_path_factory.mktemp("browser-default") / "data", browser_env(allow=None)
    )
    account = Account(server, unique("default"))
    try:
        yield account
    finally:
        account.close()
        stop_server(server)


def refused(job: dict[str, Any], reason: str) -> None:
    """Assert the job failed with url_not_allowed naming `reason`."""
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "url_not_allowed", job["error"]
    assert reason in job["error"]["message"], job["error"]["message"]


def test_loopback_is_refused_without_the_allow_list(default: Account, site: Site) -> None:
    seen = len(site.requests)
    refused(default.scrape(url=site.url("/")), "127.0.0.1 is a loopback address")
    refused(default.scrape(url=site.url("/", host="localhost")), "a loopback address")
    assert len(site.requests) == seen  # nothing reached the site


def test_metadata_and_private_addresses_are_refused(allowed: Account) -> None:
    refused(allowed.scrape(url="http://169.254.169.254/latest/meta-data/"), "cloud metadata")
    refused(allowed.scrape(url="http://10.1.2.3/"), "10.1.2.3 is a private address")
    refused(allowed.scrape(url="https://[::1]:8443/"), "::1 is a loopback address")
    refused(allowed.scrape(url="http://127.0.0.2/"), "127.0.0.2 is a loopback address")


def test_file_urls_are_refused(allowed: Account) -> None:
    response = allowed.http.post(
        "/v1/jobs", json={"kind": "browser.scrape", "input": {"url": "file:///etc/passwd"}}
    )
    assert response.status_code == 422, response.text
    job = allowed.actions({"method": "Page.navigate", "params": {"url": "file:///etc/passwd"}})
    refused(job, "file: is not allowed")
    job = allowed.actions({"method": "Page.navigate", "params": {"url": "chrome://version"}})
    refused(job, "chrome: is not allowed")


def test_a_redirect_to_a_private_address_is_refused(allowed: Account, site: Site) -> None:
    job = allowed.scrape(url=site.url("/to-private"))
    refused(job, "10.255.255.1 is a private address (http://10.255.255.1/secret)")

    ok = allowed.scrape(url=site.url("/redirect?to=/final"), selector="h1")
    assert ok["status"] == "succeeded" and ok["result"]["url"] == site.url("/final")


def test_page_initiated_navigation_to_a_private_address_fails_the_job(
    allowed: Account, site: Site
) -> None:
    job = allowed.actions(
        {"method": "Page.navigate", "params": {"url": site.url("/")}},
        {
            "method": "Runtime.evaluate",
            "params": {"expression": "location.href = 'http://192.168.77.1/'"},
        },
        {
            "method": "Runtime.evaluate",
            "params": {"expression": "new Promise(r => setTimeout(r, 500))", "awaitPromise": True},
        },
    )
    refused(job, "192.168.77.1 is a private address")


def test_subresources_to_refused_addresses_are_blocked_and_listed(
    allowed: Account, site: Site
) -> None:
    job = allowed.scrape(url=site.url("/pixel"), selector="h1")
    assert job["status"] == "succeeded", job
    assert job["result"]["matches"] == [{"text": "with a pixel"}]
    (blocked,) = job["result"]["blocked"]
    assert blocked["url"].startswith("http://169.254.169.254/")
    assert "cloud metadata" in blocked["reason"]

    script = "fetch('http://10.0.0.1/').then(() => 'reached', e => 'blocked: ' + e.message)"
    job = allowed.actions(
        {"method": "Page.navigate", "params": {"url": site.url("/")}},
        {
            "method": "Runtime.evaluate",
            "params": {"expression": script, "awaitPromise": True, "returnByValue": True},
        },
    )
    assert job["status"] == "succeeded", job
    assert job["result"]["results"][1]["result"]["value"].startswith("blocked: ")


def test_the_browsers_own_devtools_port_is_never_reachable(allowed: Account, site: Site) -> None:
    warm = allowed.scrape(url=site.url("/"))
    assert warm["status"] == "succeeded", warm
    ports = [
        int(path.read_text().split()[0])
        for path in (allowed.server.data_dir / "browsers").glob("*/DevToolsActivePort")
    ]
    assert ports, "no browser profile with a DevTools port"
    # 127.0.0.1 is allowed on this server, but not the engine's own DevTools endpoint.
    refused(allowed.scrape(url=f"http://127.0.0.1:{ports[0]}/json/list"), "browser engine itself")
