"""`idempotency_key`: a repeated create returns the original job; a different body under the
same key is refused; keys are scoped to the account."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

TERMINAL = ("succeeded", "failed", "cancelled")


def test_same_key_and_body_returns_the_same_job(tenant):
    body = {"input": {"message": "once", "sleep_ms": 10}, "idempotency_key": "nightly-1"}
    first = tenant.create(**body)
    assert first["idempotency_key"] == "nightly-1"

    replay = tenant.http.post("/v1/jobs", json={"kind": "system.echo", **body})
    assert replay.status_code == 200, replay.text
    assert replay.json()["id"] == first["id"]

    # The same request spelled differently (key order, defaults given explicitly) is the same.
    spelled = {
        "idempotency_key": "nightly-1",
        "max_attempts": 1,
        "input": {"sleep_ms": 10, "message": "once"},
        "kind": "system.echo",
    }
    again = tenant.http.post("/v1/jobs", json=spelled)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == first["id"]

    # After the job has finished, a replay still answers with it (now finished).
    done = tenant.wait_status(first["id"], *TERMINAL)
    late = tenant.http.post("/v1/jobs", json={"kind": "system.echo", **body})
    assert late.status_code == 200, late.text
    assert late.json()["id"] == first["id"] and late.json()["status"] == done["status"]

    assert [j["id"] for j in tenant.all()] == [first["id"]]
    assert [e["type"] for e in tenant.events(first["id"])].count("JobCreated") == 1


def test_same_key_with_another_body_is_a_conflict(tenant):
    first = tenant.create(input={"message": "a"}, idempotency_key="k-conflict")
    before = tenant.event_count()

    response = tenant.http.post(
        "/v1/jobs",
        json={"kind": "system.echo", "input": {"message": "b"}, "idempotency_key": "k-conflict"},
    )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert first["id"] in response.text

    other_options = tenant.http.post(
        "/v1/jobs",
        json={
            "kind": "system.echo",
            "input": {"message": "a"},
            "idempotency_key": "k-conflict",
            "max_attempts": 5,
        },
    )
    assert other_options.status_code == 409, other_options.text

    assert tenant.event_count() == before
    assert [j["id"] for j in tenant.all()] == [first["id"]]
    assert tenant.get(first["id"])["input"] == {"message": "a"}


def test_the_same_key_in_another_account_is_another_job(tenants):
    alice, bob = tenants(), tenants()
    body = {"input": {"message": "shared key"}, "idempotency_key": "same-key"}
    mine = alice.create(**body)
    theirs = bob.create(**body)  # 201: a new job, not a replay of alice's
    assert theirs["id"] != mine["id"]
    assert theirs["account"] == bob.account and mine["account"] == alice.account
    assert [j["id"] for j in alice.all()] == [mine["id"]]
    assert [j["id"] for j in bob.all()] == [theirs["id"]]


def test_concurrent_creates_with_one_key_make_one_job(tenant):
    n = 8
    barrier = threading.Barrier(n)
    clients = [tenant.server.client(tenant.key) for _ in range(n)]
    body = {"kind": "system.echo", "input": {"message": "race"}, "idempotency_key": "race-key"}

    def fire(client):
        barrier.wait()
        return client.post("/v1/jobs", json=body)

    try:
        with ThreadPoolExecutor(n) as pool:
            responses = list(pool.map(fire, clients))
    finally:
        for client in clients:
            client.close()

    assert sorted(r.status_code for r in responses) == [200] * (n - 1) + [201], [
        (r.status_code, r.text) for r in responses
    ]
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    (job_id,) = ids
    assert [j["id"] for j in tenant.all()] == [job_id]
    assert [e["type"] for e in tenant.events(job_id)].count("JobCreated") == 1
