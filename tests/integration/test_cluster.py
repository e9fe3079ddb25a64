"""A 3-node NATS cluster: replicated streams, and a node lost while jobs flow loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx
import nats
import pytest

from engine.fold import fold
from engine.subjects import stream_name
from schemas.events import AnyJobEvent, JobSucceeded, decode_job_event
from tests.support.nats import NatsCluster
from tests.support.server import ChaserServer

JOBS = 120

pytestmark = pytest.mark.cluster


@pytest.fixture
def engine(tmp_path: Path, nats_cluster: NatsCluster):
    srv = ChaserServer(
        tmp_path / "engine",
        env={"CHASER_NATS_URL": nats_cluster.urls, "CHASER_PARTITIONS": "2"},
    ).start(timeout=60)
    yield srv
    srv.stop()


async def _replicas(urls: str) -> dict[str, int]:
    nc = await nats.connect(urls.split(","))
    js = nc.jetstream()
    out = {}
    for name in (stream_name(0), stream_name(1), "CHASER_WORK", "CHASER_LOGS"):
        info = await js.stream_info(name)
        out[name] = info.config.num_replicas
    await nc.close()
    return out


async def _histories(urls: str) -> dict[str, list[AnyJobEvent]]:
    """Every job's stored events, each stored message once, read by sequence through the
    surviving nodes."""
    nc = await nats.connect(urls.split(","))
    js = nc.jetstream()
    histories: dict[str, list[AnyJobEvent]] = defaultdict(list)
    for p in range(2):
        last = (await js.stream_info(stream_name(p))).state.last_seq
        for seq in range(1, last + 1):
            msg = await js.get_msg(stream_name(p), seq=seq)
            assert msg.data is not None
            event = decode_job_event(msg.data)
            histories[event.job_id].append(event)
    await nc.close()
    return histories


def _create_all(client: httpx.Client, created: dict[str, str], errors: list[str]) -> None:
    """Create JOBS jobs; a create that fails while a node is down is retried with its key."""
    for i in range(JOBS):
        body = {
            "kind": "system.echo",
            "input": {"message": i, "sleep_ms": 20},
            "idempotency_key": f"cluster-{i}",
        }
        deadline = time.monotonic() + 60
        while True:
            try:
                response = client.post("/v1/jobs", json=body)
            except httpx.HTTPError as exc:
                response = None
                errors.append(repr(exc))
            if response is not None and response.status_code in (200, 201):
                created[body["idempotency_key"]] = response.json()["id"]
                break
            if response is not None:
                errors.append(f"{response.status_code} {response.text[:200]}")
            assert time.monotonic() < deadline, f"job {i} could not be created: {errors[-3:]}"
            time.sleep(0.2)


def test_streams_are_replicated_three_times(engine: ChaserServer, nats_cluster: NatsCluster):
    replicas = asyncio.run(_replicas(nats_cluster.urls))
    assert replicas == {name: 3 for name in replicas}


def test_node_lost_while_jobs_flow(engine: ChaserServer, nats_cluster: NatsCluster):
    key = engine.create_key("clustered")
    created: dict[str, str] = {}
    errors: list[str] = []
    with engine.client(key) as client:
        producer = threading.Thread(target=_create_all, args=(client, created, errors))
        producer.start()
        deadline = time.monotonic() + 60
        while len(created) < JOBS // 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        victim = nats_cluster.nodes[0]
        victim.stop()
        producer.join(timeout=180)
        assert not producer.is_alive()
        assert len(created) == JOBS

        pending = set(created.values())
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            page = client.get("/v1/jobs", params={"limit": 500}).json()["items"]
            statuses = {job["id"]: job["status"] for job in page}
            pending = {j for j in pending if statuses.get(j) != "succeeded"}
            time.sleep(0.2)
        assert not pending, f"{len(pending)} jobs never succeeded"
        listed = client.get("/v1/jobs", params={"limit": 500}).json()["items"]
        assert len(listed) == JOBS, "a retried create made a second job"

    survivors = ",".join(n.url for n in nats_cluster.nodes[1:])
    histories = asyncio.run(_histories(survivors))
    assert set(histories) == set(created.values())
    for job_id, events in histories.items():
        # A legal path through the state machine (a failure is only ever followed by a retry,
        # e.g. after an executor lost its lease with the node), ending in exactly one success.
        state = fold(events)
        assert state is not None and state.status == "succeeded", job_id
        assert sum(isinstance(e, JobSucceeded) for e in events) == 1, job_id
