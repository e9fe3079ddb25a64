"""An executor killed mid-job leaves no container behind once its replacement has started,
and the job still ends in exactly one terminal state."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.sandbox import (
    TEST_IMAGE,
    Sandbox,
    containers,
    nats_url,
    processes,
    requires_docker,
    start_sandbox_server,
    stop_server,
    wait_until,
)
from tests.support.server import ChaserServer

pytestmark = requires_docker


def started(server: ChaserServer) -> bool:
    """Whether an executor-only process has logged its sandbox pool's start."""
    assert server.process is not None
    if server.process.poll() is not None:
        raise AssertionError(f"executor exited:\n{server.log_path.read_text()[-3000:]}")
    for line in server.log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("event") == "executor_started" and record.get("family") == "sandbox":
            return True
    return False


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[tuple[ChaserServer, list[ChaserServer]]]:
    """An API and dispatcher process with no executors, and a list to start executors into."""
    main = start_sandbox_server(tmp_path / "main", CHASER_ROLES="api,dispatcher")
    executors: list[ChaserServer] = []
    try:
        yield main, executors
    finally:
        for executor in executors:
            executor.kill()
        stop_server(main)


def start_executor(main: ChaserServer, directory: Path) -> ChaserServer:
    """A sandbox executor process joining the main server's NATS."""
    executor = ChaserServer(
        directory,
        env={
            "CHASER_NATS_URL": nats_url(main),
            "CHASER_ROLES": "executor",
            "CHASER_REPLICAS": "1",
            "CHASER_EXECUTOR_FAMILIES": "sandbox",
            "CHASER_DEFAULT_IMAGE": TEST_IMAGE,
        },
    ).start()
    wait_until(lambda: started(executor), timeout=30, what="the sandbox executor to start")
    return executor


def test_a_killed_executor_leaves_no_container_and_the_job_ends_once(
    deployment: tuple[ChaserServer, list[ChaserServer]], tmp_path: Path
) -> None:
    main, executors = deployment
    executors.append(start_executor(main, tmp_path / "executor-1"))
    sandbox = Sandbox(main)
    try:
        job = sandbox.create(
            "sandbox.exec", {"workspace": "crash", "command": "sleep 4; echo done >> f"}
        )
        sandbox.wait(job["id"], "running")
        mine = f"org.chaser.account={sandbox.account}"
        box = wait_until(lambda: containers(mine), what="the workspace container")[0]
        wait_until(lambda: any("sleep 4" in p for p in processes(box["id"])), what="the command")

        executors[0].kill()  # SIGKILL: no clean-up of any kind
        assert [c["state"] for c in containers(mine)] == ["running"]
        executors.append(start_executor(main, tmp_path / "executor-2"))

        wait_until(
            lambda: box["id"] not in {c["id"] for c in containers(mine)},
            timeout=10,
            what="the dead executor's container to be reaped",
        )
        done = sandbox.wait(job["id"], timeout=60)
        assert done["status"] == "succeeded", done
        assert done["attempt"] == 2
        types = [e["type"] for e in sandbox.events(job["id"])]
        assert types.count("JobSucceeded") == 1
        terminal = [t for t in types if t in ("JobSucceeded", "JobFailed", "JobCancelled")]
        assert terminal == ["JobFailed", "JobSucceeded"]  # the lost attempt, then the rerun
        # The killed attempt never finished its command: the file has one line.
        assert sandbox.run(workspace="crash", command="cat f")["result"]["stdout"] == "done\n"
        survivors = [c for c in containers(mine) if c["id"] == box["id"]]
        assert survivors == []
    finally:
        sandbox.cleanup()
