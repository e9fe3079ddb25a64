"""`run_at`: a job waits, scheduled, until its time, then runs; the schedule survives a server
that is down when the time comes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TERMINAL = ("succeeded", "failed", "cancelled")


def at(value: str) -> datetime:
    """An API or event timestamp as an aware datetime."""
    return datetime.fromisoformat(value)


def test_job_with_run_at_waits_then_runs(tenant):
    run_at = datetime.now(UTC) + timedelta(seconds=3)
    job = tenant.create(input={"message": "on time"}, run_at=run_at.isoformat())
    assert job["status"] == "scheduled"
    assert at(job["run_at"]) == run_at
    assert tenant.get(job["id"])["status"] == "scheduled"

    done = tenant.wait_status(job["id"], *TERMINAL, timeout=20)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "on time", "attempt": 1}
    assert at(done["started_at"]) >= run_at

    events = tenant.events(job["id"])
    assert [e["type"] for e in events] == ["JobCreated", "JobQueued", "JobStarted", "JobSucceeded"]
    assert at(events[1]["at"]) >= run_at


def test_run_at_survives_a_restart(make_server, tenants, poll):
    server = make_server()
    jobs = tenants(server=server)
    run_at = datetime.now(UTC) + timedelta(seconds=4)
    job = jobs.create(input={"message": "after restart"}, run_at=run_at.isoformat())
    assert job["status"] == "scheduled"

    server.stop()
    poll(lambda: datetime.now(UTC) > run_at + timedelta(milliseconds=200), what="run_at to pass")
    restarted_at = datetime.now(UTC)
    server.start()

    done = jobs.wait_status(job["id"], *TERMINAL, timeout=20)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "after restart", "attempt": 1}
    assert at(done["started_at"]) >= restarted_at > run_at
    types = [e["type"] for e in jobs.events(job["id"])]
    assert types == ["JobCreated", "JobQueued", "JobStarted", "JobSucceeded"]
