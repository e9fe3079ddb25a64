"""Webhooks against a real receiver: registration, address rules, signed in-order delivery
through failures and time-outs, the deliveries record, and delivery across a restart."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.webhook_rules import verify_signature
from tests.support.receiver import Received, Receiver
from tests.support.server import ChaserServer, kill_embedded_nats

JOB_TYPES = ["JobCreated", "JobStarted", "JobSucceeded", "JobFailed"]
ALLOW = {"CHASER_WEBHOOK_ALLOW": "127.0.0.1", "CHASER_WEBHOOK_TIMEOUT_SECONDS": "1"}


@pytest.fixture(scope="module")
def hook_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """A server that allows webhooks to 127.0.0.1 and gives receivers 1 s to answer."""
    server = ChaserServer(tmp_path_factory.mktemp("webhooks") / "data", env=ALLOW)
    try:
        yield server.start()
    finally:
        server.stop()
        kill_embedded_nats(server.data_dir)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver that answers 200 unless told otherwise."""
    rec = Receiver().start()
    try:
        yield rec
    finally:
        rec.stop()


def _client(server: ChaserServer, account: str) -> httpx.Client:
    return server.client(server.create_key(account))


def _register(http: httpx.Client, url: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/v1/webhooks", json={"url": url, "types": JOB_TYPES, **extra})
    assert response.status_code == 201, response.text
    hook: dict[str, Any] = response.json()
    return hook


def _delivered(received: list[Received]) -> dict[str, Received]:
    """The successful delivery of each event id."""
    return {r.headers["X-Chaser-Event-Id"]: r for r in received if r.answer == "ok"}


def _wait_for(
    poll: Callable[..., Any], receiver: Receiver, count: int, timeout: float = 40
) -> dict[str, Received]:
    return poll(
        lambda: (lambda got: got if len(got) >= count else None)(_delivered(receiver.snapshot())),
        timeout=timeout,
        what=f"{count} events delivered",
    )


def test_a_webhook_is_registered_listed_and_deleted(hook_server: ChaserServer) -> None:
    http = _client(hook_server, "hooks-crud")
    hook = _register(http, "http://127.0.0.1:9/hook", kinds=["system.echo"])
    assert hook["secret"].startswith("whsec_") and hook["kinds"] == ["system.echo"]
    assert hook["types"] == sorted(JOB_TYPES)
    listed = http.get("/v1/webhooks").json()["items"]
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0]  # shown once, at creation
    one = http.get(f"/v1/webhooks/{hook['id']}").json()
    assert one["url"] == "http://127.0.0.1:9/hook" and "secret" not in one
    other = _client(hook_server, "hooks-other")
    assert other.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert other.delete(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert http.delete(f"/v1/webhooks/{hook['id']}").status_code == 204
    assert http.get(f"/v1/webhooks/{hook['id']}").status_code == 404
    assert http.get("/v1/webhooks").json()["items"] == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://127.0.0.2:8080/hook", "types": ["JobFailed"]}, "url"),
        ({"url": "http://10.1.2.3/hook", "types": ["JobFailed"]}, "url"),
        ({"url": "http://169.254.169.254/latest", "types": ["JobFailed"]}, "url"),
        ({"url": "ftp://127.0.0.1/hook", "types": ["JobFailed"]}, "url"),
        ({"url": "http://127.0.0.1:9/hook", "types": ["JobExploded"]}, "types"),
        ({"url": "http://127.0.0.1:9/hook", "types": []}, "types"),
        ({"url": "http://127.0.0.1:9/hook", "types": ["JobFailed"], "secret": "x"}, "secret"),
    ],
)
def test_refused_registrations_name_the_field(
    hook_server: ChaserServer, body: dict[str, Any], field: str
) -> None:
    http = _client(hook_server, "hooks-refused")
    response = http.post("/v1/webhooks", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


def test_loopback_needs_the_allow_list(shared_server: ChaserServer) -> None:
    http = _client(shared_server, "hooks-loopback")
    response = http.post(
        "/v1/webhooks", json={"url": "http://127.0.0.1:9/", "types": ["JobFailed"]}
    )
    assert response.status_code == 422
    assert "loopback" in response.json()["detail"]


def test_a_flaky_receiver_gets_every_event_in_order_and_signed(
    hook_server: ChaserServer, receiver: Receiver, poll: Callable[..., Any]
) -> None:
    http = _client(hook_server, "hooks-flaky")
    receiver.then(["fail", "fail", "hang"])  # two 500s, then a time-out, then it recovers
    hook = _register(http, receiver.url)
    echo = {"kind": "system.echo", "input": {"message": "hi"}}
    jobs = [http.post("/v1/jobs", json=echo) for _ in range(3)]
    failed = http.post("/v1/jobs", json={"kind": "system.echo", "input": {"fail": True}}).json()
    assert all(j.status_code == 201 for j in jobs)
    delivered = _wait_for(poll, receiver, 12)

    received = receiver.snapshot()
    assert [r.answer for r in received[:3]] == ["fail", "fail", "hang"]
    assert received[0].headers["X-Chaser-Event-Id"] == received[3].headers["X-Chaser-Event-Id"]
    bodies = [json.loads(r.body) for r in delivered.values()]
    assert {b["type"] for b in bodies} == {"JobCreated", "JobStarted", "JobSucceeded", "JobFailed"}
    assert any(b["job_id"] == failed["id"] and b["type"] == "JobFailed" for b in bodies)
    for r in received:
        assert verify_signature(
            hook["secret"], r.body, r.headers["X-Chaser-Signature"], now=int(time.time())
        )
        assert json.loads(r.body)["event_id"] == r.headers["X-Chaser-Event-Id"]
    # In order per job: each job's events arrive (first time) in stream order, never ahead.
    firsts: dict[str, list[int]] = {}
    for r in received:
        body = json.loads(r.body)
        seqs = firsts.setdefault(body["job_id"], [])
        if body["seq"] not in seqs:
            seqs.append(body["seq"])
    assert all(seqs == sorted(seqs) for seqs in firsts.values())

    attempts = http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"]
    outcomes = [(a["attempt"], a["outcome"], a["status_code"]) for a in reversed(attempts)]
    assert outcomes[:4] == [
        (1, "retry", 500),
        (2, "retry", 500),
        (3, "retry", None),
        (4, "delivered", 200),
    ]
    assert "timed out" in attempts[-3]["error"]
    assert attempts[-1]["next_attempt_at"] is not None


def test_kinds_filter_what_is_delivered(
    hook_server: ChaserServer, receiver: Receiver, poll: Callable[..., Any]
) -> None:
    http = _client(hook_server, "hooks-kinds")
    _register(http, receiver.url, types=["JobCreated"], kinds=["system.echo"])
    other = http.post("/v1/jobs", json={"kind": "workspace.delete", "input": {"workspace": "nope"}})
    assert other.status_code == 201, other.text
    echo = http.post("/v1/jobs", json={"kind": "system.echo", "input": {}}).json()
    delivered = _wait_for(poll, receiver, 1)
    time.sleep(1.0)  # nothing else may follow
    bodies = [json.loads(r.body) for r in receiver.snapshot()]
    assert [b["job_id"] for b in bodies] == [echo["id"]]
    assert len(delivered) == 1


def test_deliveries_resume_after_a_restart(tmp_path: Path, poll: Callable[..., Any]) -> None:
    server = ChaserServer(tmp_path / "data", env=ALLOW).start()
    receiver = Receiver()  # not listening yet: every attempt is refused
    try:
        http = _client(server, "hooks-restart")
        hook = _register(http, receiver.url)
        job = http.post("/v1/jobs", json={"kind": "system.echo", "input": {}}).json()
        poll(
            lambda: http.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["items"],
            what="a refused attempt",
        )
        server.restart()
        receiver.start()
        delivered = _wait_for(poll, receiver, 3, timeout=60)
        bodies = sorted((json.loads(r.body) for r in delivered.values()), key=lambda b: b["seq"])
        assert [b["type"] for b in bodies] == ["JobCreated", "JobStarted", "JobSucceeded"]
        assert {b["job_id"] for b in bodies} == {job["id"]}
    finally:
        receiver.stop()
        server.stop()
        kill_embedded_nats(server.data_dir)
