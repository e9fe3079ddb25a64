"""A restart (graceful or a crash) keeps every job exactly as it was: the read model is rebuilt
from the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

TERMINAL = ("succeeded", "failed", "cancelled")


def later(**delta: float) -> str:
    """An RFC 3339 timestamp `delta` from now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def populate(jobs):
    """Jobs in every status that holds still: succeeded, failed, cancelled, retried-and-
    succeeded, scheduled and queued. Returns them as the API shows them once settled."""
    ok = jobs.echo(message="ok")
    bad = jobs.echo(message="bad", fail=True)
    gone = jobs.create(input={"message": "gone"}, run_at=later(hours=1))
    assert jobs.cancel(gone["id"]).status_code == 200
    again = jobs.echo(message="again", fail=True)
    jobs.wait_status(again["id"], "failed")
    assert jobs.retry(again["id"]).status_code == 200
    waiting = jobs.create(input={"message": "waiting"}, run_at=later(hours=1))
    queued = jobs.create("sandbox.exec", input={"workspace": "ws", "command": "true"})
    jobs.wait_status(ok["id"], "succeeded")
    jobs.wait_status(bad["id"], "failed")
    jobs.wait(again["id"], lambda j: j["attempt"] == 2 and j["status"] in TERMINAL)
    return {job["id"]: jobs.get(job["id"]) for job in (ok, bad, gone, again, waiting, queued)}


def test_restart_keeps_every_job(make_server, tenants):
    server = make_server()
    jobs = tenants(server=server)
    before = populate(jobs)
    assert {j["status"] for j in before.values()} == {
        "succeeded",
        "failed",
        "cancelled",
        "scheduled",
        "queued",
    }
    listing = jobs.all()

    server.stop()
    server.start()

    after = {job_id: jobs.get(job_id) for job_id in before}
    assert after == before
    assert jobs.all() == listing


def test_crash_keeps_every_job(make_server, tenants):
    server = make_server()
    jobs = tenants(server=server)
    before = populate(jobs)
    listing = jobs.all()

    server.kill()
    server.start()

    assert {job_id: jobs.get(job_id) for job_id in before} == before
    assert jobs.all() == listing
