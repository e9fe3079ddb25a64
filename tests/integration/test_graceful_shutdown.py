"""SIGTERM: running work finishes within the shutdown grace, or is handed back and run again."""

from __future__ import annotations

import time

TERMINAL = ("succeeded", "failed", "cancelled")


def test_sigterm_lets_a_running_job_finish(make_server, tenants):
    server = make_server()  # CHASER_SHUTDOWN_GRACE_SECONDS: the default, 10 s
    jobs = tenants(server=server)
    job = jobs.echo(message="finish me", sleep_ms=1500)
    jobs.wait_status(job["id"], "running")

    assert server.stop() == 0
    server.start()

    # No waiting: the job was finished before the old process exited.
    final = jobs.get(job["id"])
    assert final["status"] == "succeeded", final
    assert final["attempt"] == 1
    assert final["result"] == {"message": "finish me", "attempt": 1}
    types = [e["type"] for e in jobs.events(job["id"])]
    assert types == ["JobCreated", "JobStarted", "JobSucceeded"]


def test_sigterm_past_the_grace_hands_the_job_back(make_server, tenants):
    server = make_server(env={"CHASER_SHUTDOWN_GRACE_SECONDS": "0.5"})
    jobs = tenants(server=server)
    job = jobs.echo(message="too long", sleep_ms=20_000)
    jobs.wait_status(job["id"], "running")

    began = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - began < 10, "shutdown waited for the job instead of the grace"
    server.start()

    rerun = jobs.wait(
        job["id"],
        lambda j: j["attempt"] == 2 and j["status"] == "running",
        timeout=20,
        what="attempt 2 running",
    )
    assert rerun["error"] is None and rerun["max_attempts"] == 1
    events = jobs.events(job["id"])
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("JobCreated", 1),
        ("JobStarted", 1),
        ("JobFailed", 1),
        ("JobRetried", 2),
        ("JobStarted", 2),
    ]
    assert events[2]["error"]["code"] in ("executor_shutdown", "executor_lost")
    assert events[2]["retriable"] is True

    assert jobs.cancel(job["id"]).status_code == 200
