"""Accounts and keys: nothing of one account is visible to another; keys pick their account;
missing, unknown and revoked keys are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx

PROBLEM = "application/problem+json"


def later(**delta: float) -> str:
    """An RFC 3339 timestamp `delta` from now."""
    return (datetime.now(UTC) + timedelta(**delta)).isoformat()


def test_a_foreign_job_looks_like_a_missing_one(tenants):
    alice, bob = tenants(), tenants()
    theirs = bob.create(input={"message": "bob's"}, run_at=later(hours=1))
    before = bob.event_count()

    for response in (
        alice.http.get(f"/v1/jobs/{theirs['id']}"),
        alice.cancel(theirs["id"]),
        alice.retry(theirs["id"]),
    ):
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
    missing = alice.http.get("/v1/jobs/job_doesnotexist")
    foreign = alice.http.get(f"/v1/jobs/{theirs['id']}")
    assert missing.status_code == foreign.status_code == 404
    assert missing.json()["title"] == foreign.json()["title"]

    assert theirs["id"] not in {j["id"] for j in alice.all()}
    assert alice.all() == []
    assert bob.get(theirs["id"])["status"] == "scheduled"
    assert bob.event_count() == before


def test_a_key_of_two_accounts_must_name_one(shared_server, tenants):
    first, second = tenants(), tenants()
    key = shared_server.create_key(first.account, second.account)
    mine = first.create(input={"message": "first's"}, run_at=later(hours=1))

    with shared_server.client(key) as no_header:
        response = no_header.get("/v1/jobs")
        assert response.status_code == 400, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "X-Chaser-Account" in response.text
        assert no_header.post("/v1/jobs", json={"kind": "system.echo"}).status_code == 400

    with shared_server.client(key, first.account) as as_first:
        assert [j["id"] for j in as_first.get("/v1/jobs").json()["items"]] == [mine["id"]]
        created = as_first.post("/v1/jobs", json={"kind": "system.echo", "run_at": later(hours=1)})
        assert created.status_code == 201 and created.json()["account"] == first.account

    with shared_server.client(key, second.account) as as_second:
        assert as_second.get("/v1/jobs").json()["items"] == []
        assert as_second.get(f"/v1/jobs/{mine['id']}").status_code == 404

    with shared_server.client(key, "not-my-account") as stranger:
        response = stranger.get("/v1/jobs")
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith(PROBLEM)

    # A one-account key naming another account in the header is refused too.
    with shared_server.client(first.key, second.account) as wrong:
        assert wrong.get("/v1/jobs").status_code == 403


def test_requests_without_a_valid_key_are_unauthorized(shared_server, tenant):
    url = shared_server.url
    for headers in (
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer not-a-key"},
        {"Authorization": "Bearer chk_000000000000_forged"},
        {"Authorization": f"Bearer {tenant.key}x"},
        {"Authorization": f"Basic {tenant.key}"},
    ):
        for method, path in (("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/metrics")):
            response = httpx.request(
                method, url + path, headers=headers, json={"kind": "system.echo"}
            )
            assert response.status_code == 401, (headers, path, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
    assert tenant.all() == []


def test_a_revoked_key_stops_working_within_seconds(shared_server, tenant, poll):
    issued = json.loads(
        shared_server.cli("keys", "create", "--account", tenant.account, "--json").stdout
    )
    with shared_server.client(issued["key"]) as client:
        assert client.get("/v1/jobs").status_code == 200

        shared_server.cli("keys", "revoke", issued["id"])
        poll(
            lambda: client.get("/v1/jobs").status_code == 401,
            timeout=5,
            what="the revoked key to be refused",
        )
        assert client.post("/v1/jobs", json={"kind": "system.echo"}).status_code == 401

    listed = json.loads(shared_server.cli("keys", "list", "--json").stdout)
    (entry,) = [k for k in listed if k["id"] == issued["id"]]
    assert entry["revoked_at"] is not None
    assert "key" not in entry and "hash" not in entry
    # Other keys of the account keep working.
    assert tenant.list()["items"] == []
