"""`/v1/events/ws`: the same event stream over WebSocket, with filters and `after`."""

from __future__ import annotations

import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect


def _connect(tenant: Any, query: str = "", key: str | None = None) -> ClientConnection:
    url = tenant.server.url.replace("http://", "ws://") + "/v1/events/ws" + query
    return connect(url, additional_headers={"Authorization": f"Bearer {key or tenant.key}"})


def _receive(ws: ClientConnection, count: int) -> list[dict[str, Any]]:
    return [json.loads(ws.recv(timeout=20)) for _ in range(count)]


def test_events_arrive_as_json_messages(tenant: Any) -> None:
    with _connect(tenant) as ws:
        job = tenant.echo(message="over websocket")
        events = _receive(ws, 3)
    assert [e["type"] for e in events] == ["JobCreated", "JobStarted", "JobSucceeded"]
    assert {e["job_id"] for e in events} == {job["id"]}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)


def test_after_replays_and_filters_apply(tenant: Any) -> None:
    first = tenant.echo(message=1)
    tenant.wait_status(first["id"], "succeeded")
    with _connect(tenant, "?after=0&type=JobSucceeded") as ws:
        replayed = _receive(ws, 1)
        second = tenant.echo(message=2)
        live = _receive(ws, 1)
    assert replayed[0]["job_id"] == first["id"] and live[0]["job_id"] == second["id"]
    assert replayed[0]["type"] == live[0]["type"] == "JobSucceeded"


@pytest.mark.parametrize(
    ("query", "key", "code"),
    [("", "chk_nope_nope", 4401), ("?type=JobExploded", None, 4422)],
)
def test_refusals_close_with_a_reason(tenant: Any, query: str, key: str | None, code: int) -> None:
    with _connect(tenant, query, key) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
