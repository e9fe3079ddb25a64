"""Wall time of a `sandbox.exec` job running `true`, create→succeeded, beside `docker run --rm`.

Starts a real `chaser serve` (embedded nats-server, Docker executor) in a temporary directory
and, in the same run and alternating so both see the same machine:

- `docker run --rm IMAGE true` (the CLI, default bridge network) and with `--network none`;
- `sandbox.exec` ephemeral (`{"ephemeral": true, "image": IMAGE, "command": "true"}`): a
  container from the warm pool, removed afterwards;
- `sandbox.exec` on a workspace (the workspace's warm container, one `exec` per job);
- `sandbox.exec` ephemeral with the warm pool off (`CHASER_SANDBOX_WARM_CONTAINERS=0`, a second
  server): a container created for the job.

Each job is timed from just before `POST /v1/jobs` to the moment its `JobSucceeded` event is
seen on NATS. Prints JSON: medians and p90 in ms, ratios to `docker run --rm`, and what the
warm pool costs (idle containers and their memory).

    .venv/bin/python bench/sandbox.py [--runs 20] [--image chaser-test/busybox:latest]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiodocker
import aiohttp
import nats

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.server import ChaserServer, kill_embedded_nats

ACCOUNT = "bench"


def summary(samples: list[float]) -> dict[str, float]:
    """Median, p90 and min of samples in seconds, in milliseconds."""
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p90_ms": round(p90 * 1000, 1),
        "min_ms": round(ordered[0] * 1000, 1),
    }


def docker_run(image: str, *flags: str) -> float:
    """One `docker run --rm IMAGE true`, in seconds."""
    began = time.perf_counter()
    subprocess.run(["docker", "run", "--rm", *flags, image, "true"], check=True)
    return time.perf_counter() - began


class JobClock:
    """Creates jobs over HTTP and times each until its JobSucceeded (or JobFailed) event."""

    def __init__(self, server: ChaserServer, key: str) -> None:
        self.server = server
        self.key = key
        self.done: dict[str, float] = {}
        self.failed: dict[str, Any] = {}
        self.changed = asyncio.Event()

    async def __aenter__(self) -> JobClock:
        url = json.loads((self.server.data_dir / "nats.json").read_text())["url"]
        self.nc = await nats.connect(url)
        await self.nc.subscribe(f"chaser.*.{ACCOUNT}.job.*.*", cb=self._on_event)
        self.http = aiohttp.ClientSession(
            self.server.url, headers={"Authorization": f"Bearer {self.key}"}
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.close()
        await self.nc.close()

    async def _on_event(self, msg: Any) -> None:
        event = json.loads(msg.data)
        if event["type"] in ("JobSucceeded", "JobFailed"):
            self.done[event["job_id"]] = time.perf_counter()
            if event["type"] == "JobFailed":
                self.failed[event["job_id"]] = event["error"]
            self.changed.set()

    async def time_job(self, job_input: dict[str, Any]) -> float:
        """Seconds from create to the job's terminal event."""
        began = time.perf_counter()
        body = {"kind": "sandbox.exec", "input": job_input}
        async with self.http.post("/v1/jobs", json=body) as response:
            job_id = (await response.json())["id"]
        while job_id not in self.done:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 60)
        if job_id in self.failed:
            raise RuntimeError(f"job {job_id} failed: {self.failed[job_id]}")
        return self.done[job_id] - began


async def warm_cost(image: str) -> dict[str, Any]:
    """Idle warm containers and the memory their cgroups use."""
    docker = aiodocker.Docker()
    try:
        found = await docker.containers.list(filters={"label": ["org.chaser.role=warm"]})
        memory = 0
        for container in found:
            stats = await container.stats(stream=False)
            memory += int((stats[0].get("memory_stats") or {}).get("usage", 0))
        return {"idle_containers": len(found), "memory_bytes": memory, "image": image}
    finally:
        await docker.close()


def start_server(root: Path, name: str, image: str, **env: str) -> tuple[ChaserServer, str]:
    """A server on its own data directory whose default image is `image`."""
    server = ChaserServer(root / name, env={"CHASER_DEFAULT_IMAGE": image, **env})
    server.start()
    return server, server.create_key(ACCOUNT)


async def measure(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    warm, warm_key = start_server(root, "warm", args.image)
    cold, cold_key = start_server(root, "cold", args.image, CHASER_SANDBOX_WARM_CONTAINERS="0")
    try:
        ephemeral = {"ephemeral": True, "image": args.image, "command": "true"}
        workspace = {"workspace": "bench", "command": "true"}
        samples: dict[str, list[float]] = {
            k: [] for k in ("docker_run", "docker_run_none", "ephemeral", "workspace", "cold")
        }
        async with JobClock(warm, warm_key) as clock, JobClock(cold, cold_key) as cold_clock:
            for _ in range(args.warmup):
                await clock.time_job(ephemeral)
                await clock.time_job(workspace)
                await cold_clock.time_job(ephemeral)
                docker_run(args.image)
            for _ in range(args.runs):
                samples["docker_run"].append(docker_run(args.image))
                samples["docker_run_none"].append(docker_run(args.image, "--network", "none"))
                # After each job, let its background work (removing the used container,
                # refilling the pool) finish, so that no sample pays for another's.
                for name, job_clock, job_input in (
                    ("ephemeral", clock, ephemeral),
                    ("workspace", clock, workspace),
                    ("cold", cold_clock, ephemeral),
                ):
                    samples[name].append(await job_clock.time_job(job_input))
                    await asyncio.sleep(args.settle)
        cost = await warm_cost(args.image)
    finally:
        for server in (warm, cold):
            server.stop()
            kill_embedded_nats(server.data_dir)
    base = statistics.median(samples["docker_run"])
    return {
        "bench": "sandbox",
        "image": args.image,
        "runs": args.runs,
        "docker_run_rm": summary(samples["docker_run"]),
        "docker_run_rm_network_none": summary(samples["docker_run_none"]),
        "sandbox_exec_ephemeral_warm_pool": summary(samples["ephemeral"]),
        "sandbox_exec_workspace": summary(samples["workspace"]),
        "sandbox_exec_ephemeral_no_pool": summary(samples["cold"]),
        "ratio_ephemeral_to_docker_run": round(statistics.median(samples["ephemeral"]) / base, 3),
        "ratio_workspace_to_docker_run": round(statistics.median(samples["workspace"]) / base, 3),
        "ratio_no_pool_to_docker_run": round(statistics.median(samples["cold"]) / base, 3),
        "goal_ratio": 1.25,
        "warm_pool_cost": cost,
    }


def image_problem(image: str) -> str | None:
    """Why the benchmark cannot run here (no Docker, no image), or None."""
    try:
        probe = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
    except OSError as exc:
        return f"no docker client: {exc}"
    if probe.returncode != 0:
        return probe.stderr.decode().strip() or "docker failed"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--settle", type=float, default=0.8, help="seconds between jobs")
    parser.add_argument("--image", default="chaser-test/busybox:latest")
    args = parser.parse_args()
    reason = image_problem(args.image)
    if reason is not None:
        sys.stdout.write(json.dumps({"bench": "sandbox", "skipped": reason}) + "\n")
        return
    try:
        with tempfile.TemporaryDirectory(prefix="chaser-bench-sandbox-") as tmp:
            result = asyncio.run(measure(args, Path(tmp)))
    finally:
        volume = f"chaser.{ACCOUNT}.bench"
        subprocess.run(["docker", "volume", "rm", "-f", volume], check=False, capture_output=True)
    sys.stdout.write(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
