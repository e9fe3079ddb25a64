"""Cancelling jobs before and while they run, refusals on finished jobs, and racing cancels."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

TERMINAL = ("succeeded", "failed", "cancelled")


def later(**delta: float) -> str:
    """An RFC 3339 timestamp `delta` from now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def types(events):
    """Event type tags, in order."""
    return [e["type"] for e in events]


def test_cancel_before_start(tenant):
    job = tenant.create(input={"message": "never"}, run_at=later(hours=1))
    assert job["status"] == "scheduled"

    response = tenant.cancel(job["id"])
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled" and body["attempt"] == 1
    assert body["started_at"] is None and body["finished_at"] is not None
    assert tenant.get(job["id"])["status"] == "cancelled"
    assert types(tenant.events(job["id"])) == ["JobCreated", "JobCancelled"]
    assert tenant.work_items() == 0


def test_cancel_while_running_stops_the_work(tenant, poll, stays):
    job = tenant.echo(message="slow", sleep_ms=20_000)
    tenant.wait_status(job["id"], "running")

    began = time.monotonic()
    response = tenant.cancel(job["id"])
    took = time.monotonic() - began
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"
    assert took < 2.0, f"cancel answered after {took:.1f}s"
    assert tenant.get(job["id"])["status"] == "cancelled"

    # The executor notices within about a second: it drops the attempt and acknowledges the
    # work item, which leaves the work queue. Nothing can finish the attempt after that.
    poll(lambda: tenant.work_items() == 0, timeout=5, what="the work item to be acknowledged")
    stays(
        lambda: tenant.get(job["id"])["status"] == "cancelled",
        seconds=1.0,
        what="status cancelled",
    )
    final = tenant.get(job["id"])
    assert final["attempt"] == 1 and final["result"] is None and final["error"] is None
    assert types(tenant.events(job["id"])) == ["JobCreated", "JobStarted", "JobCancelled"]


def test_cancel_of_a_finished_job_is_a_conflict(tenant):
    job = tenant.echo(message="quick")
    done = tenant.wait_status(job["id"], *TERMINAL)
    assert done["status"] == "succeeded"

    response = tenant.cancel(job["id"])
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 409
    assert "succeeded" in problem.values(), problem
    after = tenant.get(job["id"])
    assert after["status"] == "succeeded" and after["seq"] == done["seq"]


def test_retry_of_a_running_or_succeeded_job_is_a_conflict(tenant):
    slow = tenant.echo(message="slow", sleep_ms=20_000)
    running = tenant.wait_status(slow["id"], "running")
    response = tenant.retry(slow["id"])
    assert response.status_code == 409, response.text
    assert "running" in response.json().values(), response.json()
    assert tenant.get(slow["id"])["seq"] == running["seq"]
    assert tenant.cancel(slow["id"]).status_code == 200

    quick = tenant.echo(message="quick")
    done = tenant.wait_status(quick["id"], *TERMINAL)
    assert done["status"] == "succeeded"
    response = tenant.retry(quick["id"])
    assert response.status_code == 409, response.text
    assert "succeeded" in response.json().values(), response.json()
    assert tenant.get(quick["id"]) == done


def _race(tenant, path: str, n: int) -> list[httpx.Response]:
    """Fire `n` POSTs at `path` at the same moment, each on its own connection."""
    barrier = threading.Barrier(n)
    clients = [tenant.server.client(tenant.key) for _ in range(n)]

    def fire(client: httpx.Client) -> httpx.Response:
        barrier.wait()
        return client.post(path)

    try:
        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(fire, clients))
    finally:
        for client in clients:
            client.close()


def test_concurrent_cancels_of_a_running_job_have_one_winner(tenant):
    job = tenant.echo(message="contended", sleep_ms=20_000)
    running = tenant.wait_status(job["id"], "running")

    responses = _race(tenant, f"/v1/jobs/{job['id']}/cancel", 10)

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 9, [(r.status_code, r.text) for r in responses]
    final = tenant.get(job["id"])
    assert final["status"] == "cancelled"
    assert final["attempt"] == running["attempt"] == 1
    assert types(tenant.events(job["id"])).count("JobCancelled") == 1


def test_concurrent_cancels_of_a_queued_job_have_one_winner(tenant):
    # No executor serves the sandbox family here: the job stays queued.
    job = tenant.create("sandbox.exec", input={"workspace": "scratch", "command": "true"})
    assert job["status"] == "queued"

    responses = _race(tenant, f"/v1/jobs/{job['id']}/cancel", 10)

    assert sorted(r.status_code for r in responses) == [200] + [409] * 9
    assert tenant.get(job["id"])["status"] == "cancelled"
    assert types(tenant.events(job["id"])) == ["JobCreated", "JobCancelled"]
