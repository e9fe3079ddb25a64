"""Browser sessions end to end: a context kept open between jobs, then terminated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.browser import (
    Account,
    needs_chromium,
    unique,
)
from tests.support.server import ChaserServer
from tests.support.site import Site

pytestmark = needs_chromium


@pytest.fixture
def acme(server: ChaserServer) -> Iterator[Account]:
    """A fresh account."""
    account = Account(server, unique("sessions"))
    try:
        yield account
    finally:
        account.close()


def evaluate(expression: str) -> dict[str, Any]:
    """A Runtime.evaluate action returning its value."""
    return {
        "method": "Runtime.evaluate",
        "params": {"expression": expression, "returnByValue": True},
    }


def value(job: dict[str, Any], index: int = -1) -> Any:
    """The value an evaluate action returned."""
    return job["result"]["results"][index]["result"].get("value")


def test_a_session_is_reused_across_jobs_then_terminated(acme: Account, site: Site) -> None:
    session = acme.open_session()
    sid = session["id"]
    assert session["type"] == "browser" and session["resource"]["url"] == "about:blank"

    first = acme.actions(
        {
            "method": "Page.navigate",
            "params": {"url": site.url("/form")},
            "wait_for": "Page.loadEventFired",
        },
        evaluate("document.cookie = 'who=ada; max-age=3600'; localStorage.n = '7'; 1"),
        session_id=sid,
    )
    assert first["status"] == "succeeded", first
    assert first["result"]["session_id"] == sid
    state = acme.session(sid)
    assert state["resource"]["url"] == site.url("/form")
    assert state["jobs"] == 1 and state["last_used_at"] >= session["last_used_at"]

    second = acme.scrape(url=site.url("/"), selector="h1", session_id=sid)
    assert second["status"] == "succeeded", second
    third = acme.actions(evaluate("document.cookie + '|' + localStorage.n"), session_id=sid)
    assert value(third) == "who=ada|7"
    assert third["result"]["url"] == site.url("/")
    state = acme.session(sid)
    assert state["jobs"] == 3 and state["resource"]["url"] == site.url("/")

    # A job outside the session sees none of it.
    outside = acme.actions(
        {
            "method": "Page.navigate",
            "params": {"url": site.url("/")},
            "wait_for": "Page.loadEventFired",
        },
        evaluate("document.cookie + '|' + localStorage.n"),
    )
    assert value(outside) == "|undefined"

    ended = acme.run("session.terminate", {"session_id": sid})
    assert ended["status"] == "succeeded", ended
    assert acme.session(sid)["status"] == "terminated"
    after = acme.actions(evaluate("1"), session_id=sid)
    assert after["status"] == "failed"
    assert after["error"]["code"] == "session_not_found"
    late = acme.scrape(url=site.url("/"), session_id=sid)
    assert late["error"]["code"] == "session_not_found"


def test_bulk_terminate_closes_browser_sessions(acme: Account) -> None:
    one, two, three = (acme.open_session()["id"] for _ in range(3))
    job = acme.run("session.bulk_terminate", {"session_ids": [one, two]})
    assert job["status"] == "succeeded", job
    assert sorted(job["result"]["terminated"]) == sorted([one, two])
    for sid in (one, two):
        assert acme.session(sid)["status"] == "terminated"
        assert acme.actions(evaluate("1"), session_id=sid)["error"]["code"] == "session_not_found"
    assert acme.actions(evaluate("6 * 7"), session_id=three)["status"] == "succeeded"

    everything = acme.run("session.bulk_terminate", {"all": True})
    assert everything["result"]["terminated"] == [three]
    assert acme.actions(evaluate("1"), session_id=three)["error"]["code"] == "session_not_found"


def test_keep_session_leaves_a_new_session_open(acme: Account, site: Site) -> None:
    job = acme.actions(
        {
            "method": "Page.navigate",
            "params": {"url": site.url("/final")},
            "wait_for": "Page.loadEventFired",
        },
        keep_session=True,
    )
    assert job["status"] == "succeeded", job
    sid = job["result"]["session_id"]
    state = acme.session(sid)
    assert state["status"] == "open" and state["resource"]["url"] == site.url("/final")
    again = acme.actions(evaluate("location.pathname"), session_id=sid)
    assert value(again) == "/final"
    assert acme.run("session.terminate", {"session_id": sid})["status"] == "succeeded"


def test_another_accounts_session_is_not_found(acme: Account, server: ChaserServer) -> None:
    sid = acme.open_session()["id"]
    other = Account(server, unique("intruder"))
    try:
        job = other.actions(evaluate("document.cookie"), session_id=sid)
        assert job["status"] == "failed" and job["error"]["code"] == "session_not_found"
    finally:
        other.close()
    assert acme.run("session.terminate", {"session_id": sid})["status"] == "succeeded"


def test_unknown_session_is_not_found(acme: Account, site: Site) -> None:
    job = acme.scrape(url=site.url("/"), session_id="ses_doesnotexist")
    assert job["status"] == "failed" and job["error"]["code"] == "session_not_found"
