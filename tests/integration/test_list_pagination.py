"""`GET /v1/jobs`: newest first, cursor pagination, filters by status, kind and creation time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

TERMINAL = ("succeeded", "failed", "cancelled")


def later(**delta: float) -> str:
    """An RFC 3339 timestamp `delta` from now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


@pytest.fixture
def population(tenant):
    """25 jobs, created in this order: 10 echoes that run, 10 scheduled an hour ahead, and 5
    sandbox commands that stay queued (no sandbox executor here), interleaved."""
    created = []
    for n in range(25):
        if n % 5 == 4:
            job = tenant.create("sandbox.exec", input={"workspace": f"ws-{n}", "command": "true"})
        elif n % 2 == 0:
            job = tenant.echo(message=n)
        else:
            job = tenant.create(input={"message": n}, run_at=later(hours=1))
        created.append(job)
    for job in created:
        if job["kind"] == "system.echo" and job["run_at"] is None:
            tenant.wait_status(job["id"], "succeeded")
    return created


def test_pages_of_ten_walk_every_job_newest_first(tenant, population):
    pages = []
    cursor = None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = tenant.list(**params)
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "pagination does not end"

    assert [len(items) for items in pages] == [10, 10, 5]
    ids = [job["id"] for items in pages for job in items]
    assert len(set(ids)) == 25
    assert ids == [job["id"] for job in reversed(population)]
    stamps = [datetime.fromisoformat(job["created_at"]) for items in pages for job in items]
    assert stamps == sorted(stamps, reverse=True)


def test_a_cursor_is_stable_while_new_jobs_arrive(tenant, population):
    first = tenant.list(limit=10)
    tenant.echo(message="newcomer")
    second = tenant.list(limit=10, cursor=first["next_cursor"])
    assert [job["id"] for job in second["items"]] == [
        job["id"] for job in list(reversed(population))[10:20]
    ]
    assert tenant.list(limit=10)["items"][0]["kind"] == "system.echo"
    assert len(tenant.all()) == 26


def test_filters(tenant, population):
    by_status = {s: tenant.all(status=s) for s in ("succeeded", "scheduled", "queued")}
    assert len(by_status["succeeded"]) == 10
    assert len(by_status["scheduled"]) == 10
    assert len(by_status["queued"]) == 5
    for status, jobs in by_status.items():
        assert {job["status"] for job in jobs} == {status}

    both = tenant.all(status="scheduled,queued")
    assert len(both) == 15
    assert {job["id"] for job in both} == {
        job["id"] for job in by_status["scheduled"] + by_status["queued"]
    }

    commands = tenant.all(kind="sandbox.exec")
    assert [job["id"] for job in commands] == [
        job["id"] for job in reversed(population) if job["kind"] == "sandbox.exec"
    ]
    assert tenant.all(kind="sandbox.exec", status="succeeded") == []
    assert tenant.all(kind="browser.scrape") == []

    pivot = population[19]
    newer = tenant.all(created_after=pivot["created_at"])
    assert [job["id"] for job in newer] == [job["id"] for job in reversed(population[20:])]
    older = tenant.all(created_before=pivot["created_at"])
    assert [job["id"] for job in older] == [job["id"] for job in reversed(population[:19])]
    window = tenant.all(
        created_after=population[4]["created_at"], created_before=population[10]["created_at"]
    )
    assert [job["id"] for job in window] == [job["id"] for job in reversed(population[5:10])]

    page = tenant.list(status="scheduled", limit=4)
    assert len(page["items"]) == 4 and page["next_cursor"] is not None
    rest = tenant.list(status="scheduled", limit=100, cursor=page["next_cursor"])
    assert len(rest["items"]) == 6 and rest["next_cursor"] is None
    assert not {j["id"] for j in page["items"]} & {j["id"] for j in rest["items"]}
