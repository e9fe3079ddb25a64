"""Helpers of the real-Docker sandbox tests: a server whose default image is the local test
image, an account-scoped API client, and Docker queries through the `docker` CLI.

Tests that need Docker are skipped (with the reason) only when no Docker daemon answers;
a missing test image is a failure, since `make services` builds it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import nats.js.errors
import pytest

from tests.support.server import ChaserServer, kill_embedded_nats

T = TypeVar("T")
TEST_IMAGE = os.environ.get("CHASER_TEST_IMAGE", "chaser-test/busybox:latest")
TERMINAL = ("succeeded", "failed", "cancelled")


def docker_problem() -> str | None:
    """Why Docker cannot be used here, or None when a daemon answers."""
    if shutil.which("docker") is None:
        return "no `docker` client on PATH (Debian package docker.io; `make services`)"
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 20 s"
    if done.returncode != 0:
        return f"Docker is unreachable: {done.stderr.strip()[:300]}"
    return None


_PROBLEM = docker_problem()
requires_docker = pytest.mark.skipif(_PROBLEM is not None, reason=f"needs Docker: {_PROBLEM}")


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr}")
    return done


def containers(*labels: str, all_states: bool = True) -> list[dict[str, str]]:
    """Containers with every `key=value` label: `{"id", "name", "state"}` each."""
    flags = [arg for label in labels for arg in ("--filter", f"label={label}")]
    listed = docker("ps", *(["-a"] if all_states else []), *flags, "--format", "{{json .}}")
    rows = [json.loads(line) for line in listed.stdout.splitlines() if line.strip()]
    return [{"id": r["ID"], "name": r["Names"], "state": r["State"]} for r in rows]


def processes(container: str) -> list[str]:
    """The command lines running in a container (empty when it is gone)."""
    done = docker("top", container, check=False)
    if done.returncode != 0:
        return []
    # UID PID PPID C STIME TTY TIME CMD: the command line is what follows the 7th column.
    return [line.split(None, 7)[-1] for line in done.stdout.splitlines()[1:] if line.strip()]


def wait_until(
    probe: Callable[[], T | None], *, timeout: float = 20.0, what: str = "condition"
) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def parse_time(stamp: str) -> datetime:
    """An RFC 3339 timestamp of the API."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def nats_url(server: ChaserServer) -> str:
    """The URL of a server's embedded nats-server."""
    url: str = json.loads((server.data_dir / "nats.json").read_text())["url"]
    return url


async def _events(url: str, account: str, aggregate: str, ident: str) -> list[dict[str, Any]]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        found: list[dict[str, Any]] = []
        names = [info.config.name or "" for info in await js.streams_info()]
        for name in sorted(n for n in names if n.startswith("CHASER_EVENTS_")):
            seq = 1
            subject = f"chaser.*.{account}.{aggregate}.{ident}.*"
            while True:
                try:
                    msg = await js.get_msg(name, seq=seq, subject=subject, next=True)
                except nats.js.errors.NotFoundError:
                    break
                assert msg.seq is not None and msg.data is not None
                found.append(json.loads(msg.data))
                seq = msg.seq + 1
        return found
    finally:
        await nc.close()


class Sandbox:
    """One fresh account on a server: its jobs, sessions, workspaces and stored events."""

    def __init__(self, server: ChaserServer, account: str | None = None) -> None:
        self.server = server
        self.account = account or f"sbx-{uuid.uuid4().hex[:10]}"
        self.key = server.create_key(self.account)
        self.http = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=30
        )

    def create(
        self, kind: str, job_input: dict[str, Any], *, expect: int = 201, **body: Any
    ) -> Any:
        """POST /v1/jobs; the body answered."""
        response = self.http.post("/v1/jobs", json={"kind": kind, "input": job_input, **body})
        assert response.status_code == expect, response.text
        return response.json()

    def get(self, job_id: str) -> Any:
        """GET one job."""
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def wait(self, job_id: str, *statuses: str, timeout: float = 30.0) -> Any:
        """Poll until the job has one of `statuses` (any terminal one by default)."""
        wanted = statuses or TERMINAL
        last: list[Any] = [None]

        def probe() -> Any:
            last[0] = self.get(job_id)
            return last[0] if last[0]["status"] in wanted else None

        try:
            return wait_until(probe, timeout=timeout, what=f"job {job_id} in {wanted}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; last seen: {last[0]}") from None

    def run(self, kind: str = "sandbox.exec", timeout: float = 30.0, **job_input: Any) -> Any:
        """Create a job and wait for its end."""
        return self.wait(self.create(kind, job_input)["id"], timeout=timeout)

    def logs(self, job_id: str, **params: Any) -> list[dict[str, Any]]:
        """GET /v1/jobs/{id}/logs as NDJSON records."""
        response = self.http.get(f"/v1/jobs/{job_id}/logs", params=params)
        assert response.status_code == 200, response.text
        return [json.loads(line) for line in response.text.splitlines() if line]

    def events(self, job_id: str, aggregate: str = "job") -> list[dict[str, Any]]:
        """Every stored event of one of this account's jobs (or sessions, workspaces)."""
        return asyncio.run(_events(nats_url(self.server), self.account, aggregate, job_id))

    def volumes(self) -> list[str]:
        """This account's workspace volumes in Docker."""
        listed = docker(
            "volume", "ls", "-q", "--filter", f"label=org.chaser.account={self.account}"
        )
        return sorted(listed.stdout.split())

    def cleanup(self) -> None:
        """Remove this account's containers and volumes; close the client."""
        for found in containers(f"org.chaser.account={self.account}"):
            docker("rm", "-f", found["id"], check=False)
        for volume in self.volumes():
            docker("volume", "rm", "-f", volume, check=False)
        self.http.close()


def start_sandbox_server(data_dir: Path, **env: str) -> ChaserServer:
    """A server whose default image is the test image (which must exist)."""
    if docker("image", "inspect", TEST_IMAGE, check=False).returncode != 0:
        pytest.fail(f"test image {TEST_IMAGE} is missing: run `make services` to build it")
    server = ChaserServer(data_dir, env={"CHASER_DEFAULT_IMAGE": TEST_IMAGE, **env})
    return server.start()


def stop_server(server: ChaserServer) -> None:
    """Stop a server and any embedded nats-server it left behind."""
    code = server.stop(timeout=20)
    if code is None or code < 0:
        kill_embedded_nats(server.data_dir)


@pytest.fixture(scope="module")
def sandbox_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """One server with every executor family for a test module."""
    server = start_sandbox_server(tmp_path_factory.mktemp("sandbox") / "data")
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture
def sandbox(sandbox_server: ChaserServer) -> Iterator[Sandbox]:
    """A fresh account on the module's server; its containers and volumes go afterwards."""
    box = Sandbox(sandbox_server)
    try:
        yield box
    finally:
        box.cleanup()
