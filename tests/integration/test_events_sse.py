"""`GET /v1/events` and `GET /v1/jobs/{id}/events`: live Server-Sent Events, filters, and
resuming from the log without a gap or a duplicate at the seam."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.support.sse import SseReader

TERMINAL_TYPES = {"JobSucceeded", "JobFailed", "JobCancelled"}


@pytest.fixture
def streams(tenant: Any) -> Iterator[Callable[..., SseReader]]:
    """`streams(path="/v1/events", headers=None, **params)`: a started reader, closed after."""
    opened: list[SseReader] = []

    def open_stream(
        path: str = "/v1/events", headers: dict[str, str] | None = None, **params: Any
    ) -> SseReader:
        auth = {"Authorization": f"Bearer {tenant.key}", **(headers or {})}
        reader = SseReader(tenant.server.url, path, auth, **params).start()
        opened.append(reader)
        return reader

    try:
        yield open_stream
    finally:
        for reader in opened:
            reader.close()


def _all_events(tenant: Any, streams: Callable[..., SseReader]) -> list[dict[str, Any]]:
    """Every stored event of the account, replayed from the log by `?after=0`."""
    count = tenant.event_count()
    reader = streams(after=0)
    return reader.wait(count)


def test_live_events_carry_their_id_type_job_time_and_seq(
    tenant: Any, streams: Callable[..., SseReader]
) -> None:
    reader = streams()
    assert reader.status == 200
    job = tenant.echo(message="hello")
    events = reader.wait(3)
    assert [e["type"] for e in events] == ["JobCreated", "JobStarted", "JobSucceeded"]
    for message, event in zip(reader.messages, events, strict=False):
        assert message.id == str(event["seq"]) and message.event == event["type"]
        assert event["job_id"] == job["id"] and event["event_id"] and event["at"]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_resuming_replays_the_missed_events_then_continues_live(
    tenant: Any, streams: Callable[..., SseReader]
) -> None:
    for i in range(3):
        tenant.wait_status(tenant.echo(message=i)["id"], "succeeded")
    history = _all_events(tenant, streams)
    cut = history[4]["seq"]
    # Appends keep landing while readers join: every reader's seam falls mid-burst.
    burst = threading.Thread(target=lambda: [tenant.echo(message=i) for i in range(12)])
    burst.start()
    readers = [
        streams(headers={"Last-Event-ID": str(cut)}),
        streams(after=history[1]["seq"]),
        streams(after=0),
    ]
    burst.join()
    for i in range(3):
        tenant.wait_status(tenant.echo(message=f"after-{i}")["id"], "succeeded")
    final = _all_events(tenant, streams)
    everything = [e["seq"] for e in final]
    assert everything == sorted(set(everything))
    for reader, after in zip(readers, [cut, history[1]["seq"], 0], strict=True):
        expected = [s for s in everything if s > after]
        got = [e["seq"] for e in reader.wait(len(expected))]
        assert got == expected, f"after {after}: gap or duplicate at the seam"


def test_filters_by_type_job_and_kind(tenant: Any, streams: Callable[..., SseReader]) -> None:
    first = tenant.echo(message="a")
    by_type = streams(type="JobSucceeded,JobFailed", after=0)
    by_job = streams(job_id=first["id"], after=0)
    by_kind = streams(kind="workspace.delete", after=0)
    failing = tenant.echo(fail=True)
    other = tenant.create("workspace.delete", input={"workspace": "nothing-here"})
    got = by_type.wait(2)
    assert {(e["type"], e["job_id"]) for e in got} == {
        ("JobSucceeded", first["id"]),
        ("JobFailed", failing["id"]),
    }
    assert {e["job_id"] for e in by_job.wait(3)} == {first["id"]}
    assert by_kind.wait(1)[0]["job_id"] == other["id"]
    assert {e["job_id"] for e in by_kind.events()} == {other["id"]}


def test_a_job_stream_ends_when_the_job_is_terminal(tenant: Any) -> None:
    job = tenant.echo(fail=True, sleep_ms=200)
    with tenant.http.stream("GET", f"/v1/jobs/{job['id']}/events") as first:
        types = [line.split(": ", 1)[1] for line in first.iter_lines() if line.startswith("event:")]
    assert types == ["JobCreated", "JobStarted", "JobFailed"]
    assert tenant.retry(job["id"]).status_code == 200
    tenant.wait_status(job["id"], "failed")
    with tenant.http.stream("GET", f"/v1/jobs/{job['id']}/events") as whole:
        lines = list(whole.iter_lines())
    types = [line.split(": ", 1)[1] for line in lines if line.startswith("event:")]
    assert types == [
        *["JobCreated", "JobStarted", "JobFailed"],
        "JobRetried",
        "JobStarted",
        "JobFailed",
    ]
    last = [line for line in lines if line.startswith("id:")][-1].split(": ", 1)[1]
    with tenant.http.stream(
        "GET", f"/v1/jobs/{job['id']}/events", headers={"Last-Event-ID": last}
    ) as resumed:
        assert [line for line in resumed.iter_lines() if line.startswith("id:")] == []


def test_job_streams_of_missing_or_foreign_jobs_are_not_found(
    tenant: Any, tenants: Callable[..., Any]
) -> None:
    job = tenant.echo()
    stranger = tenants()
    assert stranger.http.get(f"/v1/jobs/{job['id']}/events").status_code == 404
    assert tenant.http.get("/v1/jobs/job_nope/events").status_code == 404


@pytest.mark.parametrize(
    ("params", "headers", "field"),
    [
        ({"type": "JobExploded"}, {}, "type"),
        ({"after": "soon"}, {}, "after"),
        ({}, {"Last-Event-ID": "-3"}, "Last-Event-ID"),
        ({"colour": "red"}, {}, "colour"),
    ],
)
def test_bad_subscriptions_are_refused(
    tenant: Any, params: dict[str, str], headers: dict[str, str], field: str
) -> None:
    response = tenant.http.get("/v1/events", params=params, headers=headers)
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_the_stream_needs_a_key(tenant: Any) -> None:
    import httpx

    assert httpx.get(f"{tenant.server.url}/v1/events").status_code == 401
