"""Fairness between accounts: one account's flood never delays another account's job."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import ChaserServer

FLOOD = 2000


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def _flood(url: str, key: str, count: int) -> None:
    async with aiohttp.ClientSession(
        url,
        headers={"Authorization": f"Bearer {key}"},
        connector=aiohttp.TCPConnector(limit=32),
    ) as session:
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            body = {"kind": "system.echo", "input": {"message": i, "sleep_ms": 40}}
            async with sem, session.post("/v1/jobs", json=body) as response:
                assert response.status == 201, await response.text()

        await asyncio.gather(*(one(i) for i in range(count)))


@pytest.fixture
def server(tmp_path: Path):
    srv = ChaserServer(
        tmp_path / "data",
        env={"CHASER_ACCOUNT_CONCURRENCY": "16", "CHASER_EXECUTOR_CONCURRENCY": "64"},
    ).start()
    yield srv
    srv.stop()


def test_flooded_account_does_not_delay_another(server: ChaserServer) -> None:
    key_a = server.create_key("flooder")
    key_b = server.create_key("bystander")
    asyncio.run(_flood(server.url, key_a, FLOOD))
    with server.client(key_a) as a, server.client(key_b) as b:
        backlog = a.get("/v1/jobs", params={"status": "queued", "limit": 500}).json()["items"]
        assert len(backlog) >= 200, "the flood should still be queued when B arrives"

        created = b.post("/v1/jobs", json={"kind": "system.echo", "input": {"message": "b"}})
        assert created.status_code == 201
        job_id = created.json()["id"]
        deadline = time.monotonic() + 10
        job = created.json()
        while job["status"] != "succeeded" and time.monotonic() < deadline:
            job = b.get(f"/v1/jobs/{job_id}").json()
        assert job["status"] == "succeeded"
        delay = _ts(job["started_at"]) - _ts(job["created_at"])
        assert delay < 0.2, f"B's job waited {delay * 1000:.0f} ms behind A's flood"

        # A's flood was still draining after B's job ran: B did not wait for it.
        still_queued = a.get("/v1/jobs", params={"status": "queued", "limit": 1}).json()
        assert still_queued["items"], "A's backlog drained before B ran; the test proves nothing"
        running = a.get("/v1/jobs", params={"status": "running", "limit": 500}).json()["items"]
        assert len(running) <= 16, "A exceeded its concurrency limit"
