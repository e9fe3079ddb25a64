"""`chaser events tail`: the SSE client of the CLI, against a real server."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from typing import Any

from tests.support.server import CHASER


def _env(tenant: Any) -> dict[str, str]:
    env = tenant.server.env()
    env["CHASER_API_KEY"] = tenant.key
    return env


def test_tail_of_a_job_prints_its_events_and_ends(tenant: Any) -> None:
    job = tenant.echo(message="tailed", sleep_ms=300)
    result = subprocess.run(
        [CHASER, "events", "tail", "--job", job["id"], "--json"],
        env=_env(tenant),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["type"] for e in events] == ["JobCreated", "JobStarted", "JobSucceeded"]
    assert {e["job_id"] for e in events} == {job["id"]}


def test_tail_follows_the_account_with_a_type_filter(tenant: Any) -> None:
    ok = tenant.echo(message="fine")
    tenant.wait_status(ok["id"], "succeeded")
    tail = subprocess.Popen(
        [CHASER, "events", "tail", "--type", "JobFailed", "--after", "0"],
        env=_env(tenant),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    assert tail.stdout is not None
    threading.Thread(target=lambda: lines.put(tail.stdout.readline()), daemon=True).start()
    try:
        bad = tenant.echo(fail=True)
        line = lines.get(timeout=30)
    finally:
        tail.terminate()
        tail.wait(10)
    fields = line.split()
    assert fields[2:4] == ["JobFailed", bad["id"]]
    assert "echo_failed" in line
