"""The life of a `system.echo` job on a real server: statuses, result, timestamps, the stored
events behind them, and read-your-writes after every write (also across API processes)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

TERMINAL = ("succeeded", "failed", "cancelled")


def at(value: str) -> datetime:
    """An API timestamp as an aware datetime."""
    return datetime.fromisoformat(value)


def later(**delta: float) -> str:
    """An RFC 3339 timestamp `delta` from now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_echo_job_runs_from_created_to_succeeded(tenant):
    created = tenant.echo(message="hello", sleep_ms=300)

    assert created["id"].startswith("job_")
    assert created["account"] == tenant.account
    assert created["kind"] == "system.echo"
    assert created["input"] == {"message": "hello", "sleep_ms": 300}
    assert created["status"] in ("queued", "running")
    assert (created["attempt"], created["max_attempts"]) == (1, 1)
    assert created["run_at"] is None and created["idempotency_key"] is None
    assert created["finished_at"] is None
    assert created["result"] is None and created["error"] is None
    assert created["seq"] >= 1

    # Read-your-writes: the GET right after the POST already knows the job (no polling).
    seen = tenant.get(created["id"])
    assert seen["id"] == created["id"] and seen["seq"] >= created["seq"]

    done = tenant.wait_status(created["id"], *TERMINAL)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "hello", "attempt": 1}
    assert done["error"] is None and done["attempt"] == 1
    assert done["seq"] > created["seq"]
    created_at, started_at, finished_at = (
        at(done["created_at"]),
        at(done["started_at"]),
        at(done["finished_at"]),
    )
    assert created_at <= started_at <= finished_at
    assert finished_at - started_at >= timedelta(milliseconds=300)

    listed = {job["id"]: job for job in tenant.list()["items"]}
    assert listed[created["id"]] == done


def test_stored_events_tell_the_same_story_and_chain_their_hashes(tenant):
    job = tenant.echo(message="chain")
    tenant.wait_status(job["id"], *TERMINAL)

    events = tenant.events(job["id"])
    assert [e["type"] for e in events] == ["JobCreated", "JobStarted", "JobSucceeded"]
    assert {e["job_id"] for e in events} == {job["id"]}
    assert {e["account"] for e in events} == {tenant.account}
    assert [e["attempt"] for e in events] == [1, 1, 1]
    assert all(
        e["_subject"].endswith(f".{tenant.account}.job.{job['id']}.{e['type']}") for e in events
    )
    assert len({e["event_id"] for e in events}) == 3
    # The per-job hash chain: each event carries the digest of the one before it.
    assert events[0]["prev_hash"] == ""
    for previous, event in itertools.pairwise(events):
        assert event["prev_hash"] == previous["_digest"]
    assert tenant.get(job["id"])["seq"] == events[-1]["_seq"]


def test_reads_right_after_cancel_and_retry_show_the_write(tenant):
    job = tenant.create(input={"message": "later"}, run_at=later(hours=1))
    assert job["status"] == "scheduled"
    assert tenant.get(job["id"])["status"] == "scheduled"

    cancelled = tenant.cancel(job["id"])
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    seen = tenant.get(job["id"])
    assert seen["status"] == "cancelled" and seen["seq"] >= cancelled.json()["seq"]
    assert seen["finished_at"] is not None

    retried = tenant.retry(job["id"])
    assert retried.status_code == 200, retried.text
    assert retried.json()["attempt"] == 2
    seen = tenant.get(job["id"])
    assert seen["attempt"] == 2 and seen["status"] != "cancelled"
    assert seen["seq"] >= retried.json()["seq"]

    # A retry runs now, whatever the original run_at said.
    done = tenant.wait_status(job["id"], *TERMINAL)
    assert done["status"] == "succeeded"
    assert done["result"] == {"message": "later", "attempt": 2}


def test_read_your_writes_across_api_processes(shared_server, make_server, tenants, embedded_url):
    # A second API-only process on the same NATS; every write on one is visible on the
    # other at once. (CHASER_REPLICAS=1: the shared NATS is a single node; see
    # test_executor_failover.py::test_process_joins_deployment_by_nats_url_alone.)
    second = make_server(
        "api-2",
        env={
            "CHASER_NATS_URL": embedded_url(shared_server),
            "CHASER_ROLES": "api",
            "CHASER_REPLICAS": "1",
        },
    )
    here = tenants()
    there = tenants(here.account, server=second)

    for round_ in range(5):
        job = here.create(input={"message": round_}, run_at=later(hours=1))
        assert there.get(job["id"])["seq"] >= job["seq"]

        cancelled = there.cancel(job["id"])
        assert cancelled.status_code == 200, cancelled.text
        assert here.get(job["id"])["status"] == "cancelled"

        retried = here.retry(job["id"])
        assert retried.status_code == 200, retried.text
        assert there.get(job["id"])["attempt"] == 2
        ids = {item["id"] for item in there.list(limit=500)["items"]}
        assert job["id"] in ids
