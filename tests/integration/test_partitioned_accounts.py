"""P > 1 (the test servers run CHASER_PARTITIONS=3): accounts spread over partitions, every
partition's jobs run, and each account sees only its own."""

from __future__ import annotations

import uuid

from engine.subjects import partition_of

PARTITIONS = 3
TERMINAL = ("succeeded", "failed", "cancelled")


def accounts_over_partitions(per_partition: int) -> dict[str, int]:
    """Fresh account ids, `per_partition` landing in each partition, with their partition."""
    chosen: dict[str, int] = {}
    while len(chosen) < per_partition * PARTITIONS:
        account = f"part-{uuid.uuid4().hex[:8]}"
        p = partition_of(account, PARTITIONS)
        if sum(1 for q in chosen.values() if q == p) < per_partition:
            chosen[account] = p
    return chosen


def test_jobs_of_accounts_on_every_partition_run_and_stay_apart(tenants):
    accounts = accounts_over_partitions(2)
    tenant_of = {account: tenants(account) for account in accounts}

    created: dict[str, list[str]] = {}
    for account, jobs in tenant_of.items():
        created[account] = [jobs.echo(message=f"{account}/{n}")["id"] for n in range(3)]

    for account, jobs in tenant_of.items():
        for n, job_id in enumerate(created[account]):
            done = jobs.wait_status(job_id, *TERMINAL)
            assert done["status"] == "succeeded"
            assert done["account"] == account
            assert done["result"] == {"message": f"{account}/{n}", "attempt": 1}

    streams_seen = set()
    for account, jobs in tenant_of.items():
        listed = jobs.all()
        assert [j["id"] for j in listed] == created[account][::-1]
        assert {j["account"] for j in listed} == {account}
        # Every event of the account sits in the one stream of its partition.
        streams = jobs.event_streams()
        assert streams == {f"CHASER_EVENTS_{accounts[account]}"}
        streams_seen |= streams
        for job_id in created[account]:
            assert tenant_of[account].get(job_id)["id"] == job_id
            for other, other_jobs in tenant_of.items():
                if other != account:
                    assert other_jobs.http.get(f"/v1/jobs/{job_id}").status_code == 404
    assert streams_seen == {f"CHASER_EVENTS_{p}" for p in range(PARTITIONS)}
