"""browser.scrape end to end: a real `chaser serve` driving real Chromium on a local site."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.support.browser import (
    Account,
    browser_env,
    needs_chromium,
    start_server,
    stop_server,
    unique,
)
from tests.support.server import CHASER, ChaserServer
from tests.support.site import Site

pytestmark = needs_chromium


def test_text_of_every_match(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), selector="li.item")
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["url"] == site.url("/")
    assert result["status"] == 200
    assert result["title"] == "Fixture page"
    assert result["count"] == 3
    assert [m["text"] for m in result["matches"]] == ["one", "two", "three"]
    assert result["truncated"] is False
    assert "html" not in result["matches"][0] and "attributes" not in result["matches"][0]


def test_attributes_html_and_first_only(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), selector="a, h1", attributes=True, html=True, all=False)
    assert job["status"] == "succeeded", job
    (match,) = job["result"]["matches"]
    assert match["text"] == "Hello, fixtures"
    assert match["attributes"] == {"id": "headline", "class": "big title"}
    assert match["html"] == '<h1 id="headline" class="big title">Hello, fixtures</h1>'

    job = acme.scrape(url=site.url("/"), selector="#next", attributes=True)
    assert job["result"]["matches"] == [
        {"text": "next page", "attributes": {"id": "next", "href": "/final", "data-kind": "link"}}
    ]


def test_missing_selector_is_an_empty_list(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), selector=".not-there")
    assert job["status"] == "succeeded", job
    assert job["result"]["matches"] == []
    assert job["result"]["count"] == 0


def test_no_selector_returns_the_page_text_and_html(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), html=True)
    result = job["result"]
    assert "Hello, fixtures" in result["text"] and "Some body text." in result["text"]
    assert result["html"].startswith("<html>") and 'id="headline"' in result["html"]
    assert "matches" not in result


def test_invalid_selector_fails_the_job(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), selector="li[")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_selector"


def test_redirects_are_followed_and_the_status_is_the_documents(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/chain"), selector="h1")
    assert job["status"] == "succeeded", job
    assert job["result"]["url"] == site.url("/final")
    assert job["result"]["matches"] == [{"text": "final"}]
    assert job["result"]["status"] == 200

    missing = acme.scrape(url=site.url("/missing"))
    assert missing["status"] == "succeeded" and missing["result"]["status"] == 404


def test_wait_for_selector_and_wait_until(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/late"), selector="#late", wait_for_selector="#late")
    assert job["result"]["matches"] == [{"text": "arrived"}], job

    early = acme.scrape(url=site.url("/late"), selector="#late", wait_until="domcontentloaded")
    assert early["result"]["matches"] == []

    idle = acme.scrape(url=site.url("/late"), selector="#late", wait_until="networkidle")
    assert idle["result"]["matches"] == [{"text": "arrived"}], idle


def test_screenshot_is_an_artifact_served_by_the_api(
    acme: Account, site: Site, server: ChaserServer
) -> None:
    job = acme.scrape(url=site.url("/"), screenshot=True)
    assert job["status"] == "succeeded", job
    shot = job["result"]["screenshot"]
    assert shot["name"] == "screenshot-1.png" and shot["content_type"] == "image/png"
    response = acme.http.get(shot["url"])
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(response.content) == shot["bytes"]

    other = Account(server, unique("other"))
    try:
        assert other.http.get(shot["url"]).status_code == 404
    finally:
        other.close()
    assert acme.http.get(f"/v1/jobs/{job['id']}/artifacts/nope.png").status_code == 404


def test_dialogs_are_dismissed_instead_of_blocking_the_page(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/alert"), timeout_ms=10000)
    assert job["status"] == "succeeded", job
    assert job["result"]["title"] == "dismissed"


def test_a_page_that_never_loads_ends_at_timeout_ms(acme: Account, site: Site) -> None:
    started = time.monotonic()
    job = acme.scrape(url=site.url("/hang"), timeout_ms=1500)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"
    assert "1500 ms" in job["error"]["message"]
    assert time.monotonic() - started < 10


def test_unresolvable_name_fails_with_the_navigation_error(acme: Account) -> None:
    job = acme.scrape(url="http://no-such-host.invalid/")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "navigation_failed"
    assert job["error"]["message"].startswith("net::ERR_")
    assert "did not resolve" in job["error"]["message"]


def test_cancel_mid_navigation_closes_the_page_within_a_second(acme: Account, site: Site) -> None:
    before = len(site.hang_closed)
    asked = site.requests.count("/hang")
    job = acme.create("browser.scrape", {"url": site.url("/hang"), "timeout_ms": 60000})
    deadline = time.monotonic() + 10
    while site.requests.count("/hang") == asked and time.monotonic() < deadline:
        time.sleep(0.01)
    assert acme.get(job["id"])["status"] == "running"
    cancelled_at = time.monotonic()
    response = acme.http.post(f"/v1/jobs/{job['id']}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    while len(site.hang_closed) == before and time.monotonic() < cancelled_at + 5:
        time.sleep(0.01)
    assert len(site.hang_closed) > before, "the hanging request was never closed"
    assert site.hang_closed[-1] - cancelled_at < 1.0
    # The browser is still fine for the next job.
    assert acme.scrape(url=site.url("/"), selector="h1")["status"] == "succeeded"


def test_cli_scrape_with_selector(server: ChaserServer, acme: Account, site: Site) -> None:
    import subprocess

    env = {**server.env(), "CHASER_API_KEY": acme.key}
    result = subprocess.run(
        [CHASER, "jobs", "scrape", "--url", site.url("/"), "--selector", "h1", "--wait", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    job = json.loads(result.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["matches"] == [{"text": "Hello, fixtures"}]


def test_kinds_are_available(acme: Account) -> None:
    kinds = {k["kind"]: k for k in acme.http.get("/v1/jobs/kinds").json()["kinds"]}
    assert kinds["browser.scrape"]["available"] is True
    assert kinds["browser.action"]["available"] is True


def test_no_chromium_still_starts_with_browser_kinds_unavailable(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", browser_env(CHASER_CHROMIUM="/nonexistent/chrome"))
    try:
        account = Account(server, unique("nochrome"))
        kinds = {k["kind"]: k for k in account.http.get("/v1/jobs/kinds").json()["kinds"]}
        assert kinds["browser.scrape"]["available"] is False
        assert kinds["system.echo"]["available"] is True
        account.close()
    finally:
        stop_server(server)
