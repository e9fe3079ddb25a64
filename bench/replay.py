"""Rebuilding from the log, and SSE fan-out.

Part 1, on a scratch nats-server: EVENTS stored job events (chained, four per job, several
accounts, every partition) are folded into a fresh read model, measured as
- `rebuild_events_per_s`: the bulk rebuild (`chaser projections rebuild`): NATS read, decode,
  fold, in one process;
- `decode_fold_events_per_s`: the same decode and fold from bytes in memory (no NATS);
- `nats_read_events_per_s`: the bulk read alone (wire parser), and nats-py's ordered push
  consumer alone for comparison;
- `serve_start_events_per_s`: `ReadModel.start` as `chaser serve` runs it (bulk catch-up,
  then a tail per partition), and `tail_only_start_events_per_s` through the tails alone.
Part 2, on a real `chaser serve`: SUBSCRIBERS clients follow `GET /v1/events`, FANOUT events
are appended to their account, and the events delivered per second (all subscribers) are
measured from the first append to the last delivery.

    .venv/bin/python bench/replay.py [--events 200000] [--subscribers 100] [--fanout 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import nats
from nats.aio.client import Client as NATS

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cli.logs import configure_logging
from engine.auditlog import bulk_catch_up, fold_batch, rebuild
from engine.jetstream import JetStreamEventStore, bootstrap
from engine.logread import LogReader, Range
from engine.memory import MemoryEventStore
from engine.projection import ReadModel
from engine.settings import Settings
from engine.store import digest_of
from engine.subjects import job_subject, partition_of
from schemas.audit import StoredMessage
from schemas.common import StepStatus
from schemas.events import (
    AnyJobEvent,
    JobCreated,
    JobStarted,
    JobSucceeded,
    StepFinished,
    encode_event,
)
from tests.support.nats import NatsServer
from tests.support.server import ChaserServer

PARTITIONS = 4
ACCOUNTS = 40
T0 = datetime(2030, 1, 1, tzinfo=UTC)


def job_events(account: str, n: int) -> list[AnyJobEvent]:
    """One job's four events, as an echo job's history (prev_hash filled in by `stored`)."""
    job_id = f"job_bench{n:010d}"
    env: dict[str, Any] = {"account": account, "job_id": job_id, "correlation_id": job_id}
    executor = "system@bench:1:abcd"
    at = T0 + timedelta(milliseconds=n)
    return [
        JobCreated(
            event_id=f"{n}-0",
            at=at,
            actor="key:0123456789ab",
            kind="system.echo",
            input={"message": f"hello {n}", "sleep_ms": 0},
            **env,
        ),
        JobStarted(event_id=f"{n}-1", at=at, actor=executor, executor_id=executor, **env),
        StepFinished(
            event_id=f"{n}-2",
            at=at,
            actor=executor,
            index=0,
            name="echo",
            status=StepStatus.SUCCEEDED,
            result={"message": f"hello {n}"},
            output_tail=f"hello {n}\n",
            output_bytes=12,
            **env,
        ),
        JobSucceeded(
            event_id=f"{n}-3", at=at, actor=executor, result={"message": f"hello {n}"}, **env
        ),
    ]


def stored(events: list[AnyJobEvent]) -> list[bytes]:
    """The events as stored bytes, each carrying its predecessor's digest."""
    out, prev = [], ""
    for event in events:
        data = encode_event(msgspec.structs.replace(event, prev_hash=prev))
        prev = digest_of(data)
        out.append(data)
    return out


async def populate(nc: NATS, jobs: int) -> list[tuple[int, bytes]]:
    """Store `jobs` jobs' events (core publishes, then wait for the streams to hold them)."""
    rows: list[tuple[int, bytes]] = []
    for n in range(jobs):
        account = f"bench-{n % ACCOUNTS}"
        p = partition_of(account, PARTITIONS)
        for event, data in zip(job_events(account, n), stored(job_events(account, n)), strict=True):
            subject = job_subject(p, account, event.job_id, type(event).__name__)
            await nc.publish(subject, data, headers={"Nats-Msg-Id": event.event_id})
            rows.append((p, data))
        if n % 2000 == 0:
            await nc.flush()
    await nc.flush()
    js = nc.jetstream()
    while True:
        infos = [await js.stream_info(f"CHASER_EVENTS_{p}") for p in range(PARTITIONS)]
        if sum(i.state.messages for i in infos) >= len(rows):
            return rows
        await asyncio.sleep(0.1)


def decode_fold(rows: list[tuple[int, bytes]]) -> float:
    """Events/s of decode + fold into a read model, from bytes in memory, in the rebuild's
    batches (each partition's messages, 512 at a time)."""
    by_partition: list[list[StoredMessage]] = [[] for _ in range(PARTITIONS)]
    for p, data in rows:
        by_partition[p].append(StoredMessage(p, len(by_partition[p]) + 1, "", data))
    read_model = ReadModel(MemoryEventStore(PARTITIONS))
    start = time.perf_counter()
    for p, messages in enumerate(by_partition):
        for i in range(0, len(messages), 512):
            fold_batch(read_model.apply_batch, p, messages[i : i + 512])
    return len(rows) / (time.perf_counter() - start)


async def read_only(js: Any, raw: bool) -> float:
    """Events/s of reading every partition, without decoding."""
    reader = LogReader(js, raw=raw)
    count, start = 0, time.perf_counter()
    for p in range(PARTITIONS):
        last = await reader.last_seq(p)
        async for batch in reader.read(Range(partition=p, until=last)):
            count += len(batch)
    return count / (time.perf_counter() - start)


async def bulk_rebuild(js: Any) -> float:
    """Events/s of `chaser projections rebuild`: read, decode and fold every partition."""
    read_model = ReadModel(JetStreamEventStore(js, PARTITIONS))
    report = await rebuild(LogReader(js), read_model, PARTITIONS)
    assert report.rejected == 0 and report.undecodable == 0, report
    return report.events / report.seconds


async def serve_start(js: Any, events: int, *, bulk: bool) -> float:
    """Events/s of the read model's start-up catch-up: as `chaser serve` does it (bulk reads,
    then the tails), or through the tails alone."""
    read_model = ReadModel(JetStreamEventStore(js, PARTITIONS))
    start = time.perf_counter()
    await read_model.start(bulk_catch_up(LogReader(js)) if bulk else None)
    await read_model.wait_ready(600)
    seconds = time.perf_counter() - start
    await read_model.stop()
    return events / seconds


async def part_one(tmp: Path, jobs: int) -> dict[str, Any]:
    """The rebuild figures on a scratch nats-server."""
    server = NatsServer.start(tmp / "nats")
    try:
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await bootstrap(js, Settings(partitions=PARTITIONS, replicas=1))
        rows = await populate(nc, jobs)
        gc.collect()
        best = lambda runs: round(max(runs))  # noqa: E731 - the least disturbed of the runs
        rebuilds = [await bulk_rebuild(js) for _ in range(3)]
        figures = {
            "events": len(rows),
            "rebuild_events_per_s": best(rebuilds),
            "rebuild_events_per_s_median": round(statistics.median(rebuilds)),
            "decode_fold_events_per_s": best([decode_fold(rows) for _ in range(3)]),
            "nats_read_events_per_s": best([await read_only(js, raw=True) for _ in range(3)]),
            "nats_py_read_events_per_s": round(await read_only(js, raw=False)),
            "serve_start_events_per_s": round(await serve_start(js, len(rows), bulk=True)),
            "tail_only_start_events_per_s": round(await serve_start(js, len(rows), bulk=False)),
        }
        await nc.close()
        return figures
    finally:
        server.stop()


async def follow(session: aiohttp.ClientSession, url: str, want: int, done: list[float]) -> None:
    """One subscriber: count SSE messages until `want` arrived."""
    got, tail = 0, b""
    async with session.get(url) as response:
        async for chunk in response.content.iter_any():
            text = tail + chunk
            got += text.count(b"\n\nid: ")
            tail = text[-6:]
            if got >= want:
                done.append(time.perf_counter())
                return


async def part_two(tmp: Path, subscribers: int, events: int) -> dict[str, Any]:
    """SSE fan-out through a real `chaser serve`."""
    server = ChaserServer(
        tmp / "serve", env={"CHASER_LOG_LEVEL": "warning", "CHASER_EXECUTOR_FAMILIES": "system"}
    ).start()
    try:
        account = "fanout"
        key = server.create_key(account)
        url = json.loads((server.data_dir / "nats.json").read_text())["url"]
        partitions = int(server.env()["CHASER_PARTITIONS"])
        p = partition_of(account, partitions)
        done: list[float] = []
        connector = aiohttp.TCPConnector(limit=subscribers + 4)
        headers = {"Authorization": f"Bearer {key}"}
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(
            server.url, headers=headers, connector=connector, timeout=timeout
        ) as session:
            readers = [
                asyncio.create_task(follow(session, "/v1/events", events, done))
                for _ in range(subscribers)
            ]
            await asyncio.sleep(2.0)  # every subscriber connected
            nc = await nats.connect(url)
            start = time.perf_counter()
            for n in range(events):
                created = job_events(account, n)[0]
                subject = job_subject(p, account, created.job_id, "JobCreated")
                await nc.publish(subject, encode_event(created))
            await nc.flush()
            await asyncio.wait_for(asyncio.gather(*readers), 600)
            await nc.close()
        seconds = max(done) - start
        return {
            "subscribers": subscribers,
            "events": events,
            "seconds": round(seconds, 3),
            "delivered_events_per_s": round(subscribers * events / seconds),
            "per_subscriber_events_per_s": round(events / seconds),
        }
    finally:
        server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000, help="events to rebuild from")
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--fanout", type=int, default=5_000, help="events fanned out")
    args = parser.parse_args()
    configure_logging("warning")  # stdout is for the JSON
    with tempfile.TemporaryDirectory(prefix="chaser-replay-", ignore_cleanup_errors=True) as tmp:
        rebuilt = await part_one(Path(tmp), args.events // 4)
        fanout = await part_two(Path(tmp), args.subscribers, args.fanout)
    print(
        json.dumps(
            {
                "bench": "replay",
                **rebuilt,
                "goal_events_per_s": 100_000,
                "sse_fanout": fanout,
                "cpus": os.cpu_count(),
                "load_average_1m": round(os.getloadavg()[0], 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
