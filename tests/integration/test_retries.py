"""Retries: by request after a failure, and automatically for retriable failures, with
exponential backoff, up to `max_attempts`."""

from __future__ import annotations

from datetime import datetime, timedelta

TERMINAL = ("succeeded", "failed", "cancelled")


def at(value: str) -> datetime:
    """An API or event timestamp as an aware datetime."""
    return datetime.fromisoformat(value)


def test_retry_after_failure_runs_a_new_attempt(tenant):
    job = tenant.echo(message="boom", fail=True)
    failed = tenant.wait_status(job["id"], *TERMINAL)
    assert failed["status"] == "failed" and failed["attempt"] == 1
    assert failed["error"]["code"] == "echo_failed"
    assert failed["error"]["message"]

    response = tenant.retry(job["id"])
    assert response.status_code == 200, response.text
    assert response.json()["attempt"] == 2
    seen = tenant.get(job["id"])  # read-your-writes, no polling
    assert seen["attempt"] == 2 and seen["seq"] >= response.json()["seq"]

    # The input still fails, so attempt 2 fails the same way.
    again = tenant.wait(
        job["id"],
        lambda j: j["attempt"] == 2 and j["status"] in TERMINAL,
        what="attempt 2 to finish",
    )
    assert again["status"] == "failed" and again["error"]["code"] == "echo_failed"
    assert at(again["started_at"]) > at(failed["finished_at"])

    events = tenant.events(job["id"])
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("JobCreated", 1),
        ("JobStarted", 1),
        ("JobFailed", 1),
        ("JobRetried", 2),
        ("JobStarted", 2),
        ("JobFailed", 2),
    ]
    assert events[3]["automatic"] is False

    assert tenant.retry(job["id"]).status_code == 200
    third = tenant.wait(job["id"], lambda j: j["attempt"] == 3 and j["status"] in TERMINAL)
    assert third["status"] == "failed"


def test_retriable_failures_retry_with_backoff_until_max_attempts(tenant, stays):
    job = tenant.create(
        input={"message": "flaky", "fail": True, "retriable": True},
        max_attempts=3,
        backoff_ms=50,
    )
    assert job["max_attempts"] == 3

    final = tenant.wait(
        job["id"],
        lambda j: j["status"] == "failed" and j["attempt"] == 3,
        what="failed at attempt 3",
    )
    assert final["error"]["code"] == "echo_failed"
    stays(
        lambda: tenant.get(job["id"])["attempt"] == 3,
        seconds=1.0,
        what="no attempt beyond max_attempts",
    )

    events = tenant.events(job["id"])
    assert [(e["type"], e["attempt"]) for e in events] == [
        ("JobCreated", 1),
        ("JobStarted", 1),
        ("JobFailed", 1),
        ("JobRetried", 2),  # scheduled for after the backoff,
        ("JobQueued", 2),  # then queued when it has passed
        ("JobStarted", 2),
        ("JobFailed", 2),
        ("JobRetried", 3),
        ("JobQueued", 3),
        ("JobStarted", 3),
        ("JobFailed", 3),
    ]
    retries = [e for e in events if e["type"] == "JobRetried"]
    starts = [e for e in events if e["type"] == "JobStarted"]
    assert all(e["automatic"] for e in retries)
    assert all(e["retriable"] for e in events if e["type"] == "JobFailed")
    # backoff_ms * 2^(attempt-1) * [0.5, 1.5) after the failed attempt.
    for retry, start in zip(retries, starts[1:], strict=True):
        nominal = timedelta(milliseconds=50 * 2 ** (retry["attempt"] - 2))
        delay = at(retry["run_at"]) - at(retry["at"])
        slack = timedelta(milliseconds=1)
        assert nominal * 0.5 - slack <= delay < nominal * 1.5 + slack, (retry, delay)
        assert at(start["at"]) >= at(retry["run_at"])


def test_non_retriable_failure_is_not_retried_automatically(tenant, stays):
    job = tenant.create(input={"fail": True}, max_attempts=3, backoff_ms=50)
    failed = tenant.wait_status(job["id"], *TERMINAL)
    assert failed["status"] == "failed" and failed["attempt"] == 1
    stays(
        lambda: tenant.get(job["id"])["attempt"] == 1,
        seconds=0.6,
        what="a single attempt",
    )
    assert [e["type"] for e in tenant.events(job["id"])] == [
        "JobCreated",
        "JobStarted",
        "JobFailed",
    ]


def test_cancel_during_the_backoff_stops_the_retries(tenant, stays):
    job = tenant.create(
        input={"message": "flaky", "fail": True, "retriable": True},
        max_attempts=3,
        # Long enough (2-6 s) that the cancel surely lands inside it on a loaded machine.
        backoff_ms=4000,
    )
    waiting = tenant.wait(
        job["id"],
        lambda j: j["attempt"] == 2 and j["status"] == "scheduled",
        what="attempt 2 waiting out its backoff",
    )
    assert waiting["started_at"] is None and waiting["error"] is None

    response = tenant.cancel(job["id"])
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "cancelled"

    # The backoff (at most 1.5 * 4000 ms) passes; the retry timer must not revive the job.
    stays(
        lambda: tenant.get(job["id"])["status"] == "cancelled",
        seconds=6.5,
        what="status cancelled",
    )
    assert [(e["type"], e["attempt"]) for e in tenant.events(job["id"])] == [
        ("JobCreated", 1),
        ("JobStarted", 1),
        ("JobFailed", 1),
        ("JobRetried", 2),
        ("JobCancelled", 2),
    ]
