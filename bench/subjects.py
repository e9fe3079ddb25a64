"""What one subject per job costs nats-server: memory and append rate as the job count grows.

Appends JOBS jobs' worth of events (3 per job: created, started, succeeded, ~400 bytes each)
on per-job subjects `chaser.0.<account>.job.<id>.<Type>` with the engine's expected-sequence
headers, to a file-backed stream on a fresh nats-server, and samples the server's resident
memory and the append rate every CHECKPOINT jobs. Prints JSON, with the figures scaled to a
million jobs.

    .venv/bin/python bench/subjects.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import StreamConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.nats import NatsServer

EVENTS = ("JobCreated", "JobStarted", "JobSucceeded")
PAYLOAD = b"x" * 400


def rss_mib(pid: int) -> float:
    """Resident set size of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def append_jobs(js: nats.js.JetStreamContext, first: int, count: int) -> None:
    """Append `count` jobs' three events each, 500 appends in flight."""
    sem = asyncio.Semaphore(500)

    async def job(n: int) -> None:
        job_id = f"job_{n:012d}"
        scope = f"chaser.0.bench.job.{job_id}.*"
        last = 0
        for event in EVENTS:
            async with sem:
                ack = await js.publish(
                    f"chaser.0.bench.job.{job_id}.{event}",
                    PAYLOAD,
                    headers={
                        "Nats-Expected-Last-Subject-Sequence": str(last),
                        "Nats-Expected-Last-Subject-Sequence-Subject": scope,
                    },
                )
                last = ack.seq

    await asyncio.gather(*(job(n) for n in range(first, first + count)))


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    checkpoint = max(args.jobs // 5, 1)
    with tempfile.TemporaryDirectory(prefix="chaser-subjects-", ignore_cleanup_errors=True) as tmp:
        server = NatsServer.start(Path(tmp) / "nats")
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            await js.add_stream(StreamConfig(name="CHASER_EVENTS_0", subjects=["chaser.0.>"]))
            assert server._process is not None
            pid = server._process.pid
            samples = [{"jobs": 0, "rss_mib": round(rss_mib(pid), 1)}]
            done = 0
            while done < args.jobs:
                start = time.perf_counter()
                await append_jobs(js, done, checkpoint)
                elapsed = time.perf_counter() - start
                done += checkpoint
                samples.append(
                    {
                        "jobs": done,
                        "rss_mib": round(rss_mib(pid), 1),
                        "events_per_second": round(checkpoint * len(EVENTS) / elapsed),
                    }
                )
            await nc.close()
        finally:
            server.stop()
    growth = (samples[-1]["rss_mib"] - samples[0]["rss_mib"]) / args.jobs * 1_000_000
    first_rate = samples[1]["events_per_second"]
    last_rate = samples[-1]["events_per_second"]
    print(
        json.dumps(
            {
                "bench": "subjects",
                "jobs": args.jobs,
                "samples": samples,
                "rss_mib_per_million_jobs": round(growth, 1),
                "append_rate_last_vs_first": round(last_rate / first_rate, 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
