"""browser.action end to end: DevTools calls in order on the job's page, each one a step."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.browser import (
    Account,
    needs_chromium,
)
from tests.support.site import Site

pytestmark = needs_chromium


def navigate(url: str) -> dict[str, Any]:
    """A Page.navigate action that waits for the load event."""
    return {"method": "Page.navigate", "params": {"url": url}, "wait_for": "Page.loadEventFired"}


def evaluate(expression: str, **extra: Any) -> dict[str, Any]:
    """A Runtime.evaluate action returning its value."""
    return {
        "method": "Runtime.evaluate",
        "params": {"expression": expression, "returnByValue": True, "awaitPromise": True},
        **extra,
    }


def test_fill_and_submit_a_form(acme: Account, site: Site) -> None:
    job = acme.actions(
        navigate(site.url("/form")),
        evaluate("document.querySelector('#name').focus()"),
        {"method": "Input.insertText", "params": {"text": "Ada"}},
        evaluate("document.querySelector('#go').click()", wait_for="Page.loadEventFired"),
        evaluate("document.querySelector('#greeting').textContent"),
    )
    assert job["status"] == "succeeded", job
    assert [s["name"] for s in job["steps"]] == [
        "1:Page.navigate",
        "2:Runtime.evaluate",
        "3:Input.insertText",
        "4:Runtime.evaluate",
        "5:Runtime.evaluate",
    ]
    assert all(s["status"] == "succeeded" for s in job["steps"])
    assert job["steps"][4]["result"]["result"]["value"] == "Hello, Ada!"
    assert job["steps"][3]["result"]["event"]["method"] == "Page.loadEventFired"
    assert job["result"]["url"] == site.url("/greet")
    assert job["result"]["results"][4]["result"]["value"] == "Hello, Ada!"
    assert "POST /greet" in site.requests


def test_a_protocol_error_fails_the_job_at_that_step(acme: Account, site: Site) -> None:
    job = acme.actions(
        navigate(site.url("/")),
        {"method": "DOM.querySelector", "params": {"nodeId": 987654, "selector": "h1"}},
        evaluate("1 + 1"),
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "cdp_error"
    assert job["error"]["message"].startswith("action 2 (DOM.querySelector): ")
    assert [s["status"] for s in job["steps"]] == ["succeeded", "failed"]
    assert job["steps"][1]["result"]["error"]["code"] == "cdp_error"


def test_stop_on_error_false_records_and_goes_on(acme: Account, site: Site) -> None:
    job = acme.actions(
        navigate(site.url("/")),
        {"method": "Page.noSuchMethod"},
        evaluate("throw new Error('boom')"),
        evaluate("document.title"),
        stop_on_error=False,
    )
    assert job["status"] == "succeeded", job
    assert [s["status"] for s in job["steps"]] == ["succeeded", "failed", "failed", "succeeded"]
    assert "wasn't found" in job["steps"][1]["result"]["error"]["message"]
    assert job["steps"][2]["result"]["error"]["code"] == "script_error"
    assert "boom" in job["steps"][2]["result"]["error"]["message"]
    assert [e["action"] for e in job["result"]["errors"]] == [2, 3]
    assert job["result"]["results"][3]["result"]["value"] == "Fixture page"


@pytest.mark.parametrize(
    "method",
    [
        "Target.createTarget",
        "Browser.close",
        "SystemInfo.getProcessInfo",
        "Fetch.enable",
        "Network.setRequestInterception",
        "Storage.getCookies",
        "DOM.setFileInputFiles",
    ],
)
def test_browser_wide_and_policy_breaking_methods_are_refused(acme: Account, method: str) -> None:
    job = acme.actions(evaluate("1"), {"method": method, "params": {}})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "action_refused"
    assert job["error"]["message"].startswith(f"action 2 ({method}): ")
    assert job["steps"] == []  # nothing ran


def test_wait_for_an_event_that_never_comes_times_out(acme: Account, site: Site) -> None:
    job = acme.actions(
        navigate(site.url("/")),
        evaluate("1", wait_for="Page.loadEventFired", timeout_ms=400),
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"
    assert job["steps"][1]["status"] == "timed_out"


def test_results_are_bounded(acme: Account, site: Site) -> None:
    job = acme.actions(evaluate("'x'.repeat(100000)"))
    assert job["status"] == "succeeded", job
    step = job["steps"][0]["result"]
    assert step["truncated"] is True and step["bytes"] > 100000
    assert len(step["preview"]) <= 16 * 1024

    huge = acme.actions(evaluate("'y'.repeat(40 * 1024 * 1024)"))
    assert huge["status"] == "failed"
    assert huge["error"]["code"] == "result_too_large"
    # Only that job's connection was dropped: the browser goes on.
    assert acme.actions(evaluate("2 + 2"))["result"]["results"][0]["result"]["value"] == 4


def test_jobs_do_not_share_cookies_or_storage(acme: Account, site: Site) -> None:
    first = acme.actions(
        navigate(site.url("/")),
        evaluate("document.cookie = 'secret=1; max-age=3600'; localStorage.k = 'v'; 1"),
    )
    assert first["status"] == "succeeded", first
    second = acme.actions(
        navigate(site.url("/")), evaluate("document.cookie + '|' + localStorage.getItem('k')")
    )
    assert second["result"]["results"][1]["result"]["value"] == "|null"
