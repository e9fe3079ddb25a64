"""`sandbox.exec` on real Docker: workspaces, ephemeral runs, limits, timeouts, cancellation,
output bounds, logs, and what a container may not do."""

from __future__ import annotations

import itertools
import json
import subprocess
import time

import httpx

from tests.support.sandbox import (
    TEST_IMAGE,
    Sandbox,
    containers,
    docker,
    parse_time,
    processes,
    requires_docker,
    sandbox,
    sandbox_server,
    wait_until,
)
from tests.support.server import CHASER

__all__ = ["sandbox", "sandbox_server"]  # fixtures used by name
pytestmark = requires_docker


def test_workspace_files_persist_between_jobs(sandbox: Sandbox) -> None:
    first = sandbox.run(workspace="proj", command="echo hello > greeting.txt && pwd")
    assert first["status"] == "succeeded", first
    assert first["result"]["stdout"] == "/workspace\n"
    assert first["result"]["workspace"] == "proj"
    second = sandbox.run(workspace="proj", command="cat greeting.txt")
    assert second["status"] == "succeeded", second
    assert second["result"]["stdout"] == "hello\n"
    assert sandbox.volumes() == [f"chaser.{sandbox.account}.proj"]

    created = sandbox.events("proj", aggregate="workspace")
    assert [e["type"] for e in created] == ["WorkspaceCreated"]
    assert created[0]["job_id"] == first["id"]
    listed = sandbox.http.get("/v1/workspaces").json()["items"]
    assert [w["name"] for w in listed] == ["proj"]
    assert listed[0]["last_used_at"] is not None
    assert listed[0]["size_bytes"] is not None and listed[0]["size_bytes"] >= 6


def test_accounts_do_not_share_workspaces(sandbox_server, sandbox: Sandbox) -> None:
    other = Sandbox(sandbox_server)
    try:
        assert sandbox.run(workspace="shared", command="echo mine > f")["status"] == "succeeded"
        seen = other.run(workspace="shared", command="cat f 2>/dev/null || echo absent")
        assert seen["result"]["stdout"] == "absent\n"
        assert other.volumes() == [f"chaser.{other.account}.shared"]
        assert other.http.get("/v1/workspaces").json()["items"][0]["name"] == "shared"
    finally:
        other.cleanup()


def test_ephemeral_container_is_fresh_and_removed(sandbox: Sandbox) -> None:
    job = sandbox.run(
        ephemeral=True, image=TEST_IMAGE, command="ls /workspace 2>&1; echo out; echo err >&2"
    )
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["stdout"].endswith("out\n") and "No such file" in result["stdout"]
    assert result["stderr"] == "err\n"
    assert result["workspace"] is None and result["image"] == TEST_IMAGE
    name = result["container"]
    assert name.startswith(f"chaser-job.{sandbox.account}.{job['id']}")
    wait_until(
        lambda: not docker("ps", "-a", "-q", "--filter", f"name={name}").stdout.strip(),
        timeout=10,
        what="the ephemeral container to be removed",
    )


def test_env_workdir_and_stdin(sandbox: Sandbox) -> None:
    job = sandbox.run(
        workspace="opts",
        command='echo "$GREETING" && pwd && cat',
        env={"GREETING": "hi there"},
        workdir="sub/dir",
        stdin="from stdin\n",
    )
    assert job["status"] == "succeeded", job
    assert job["result"]["stdout"] == "hi there\n/workspace/sub/dir\nfrom stdin\n"
    assert job["result"]["exit_code"] == 0 and job["result"]["timed_out"] is False
    assert job["result"]["duration_ms"] >= 0


def test_nonzero_exit_fails_and_is_not_retried(sandbox: Sandbox) -> None:
    created = sandbox.create(
        "sandbox.exec", {"workspace": "exit", "command": "echo bad >&2; exit 3"}, max_attempts=3
    )
    job = sandbox.wait(created["id"])
    assert job["status"] == "failed" and job["attempt"] == 1
    assert job["error"]["code"] == "command_failed"
    assert job["result"]["exit_code"] == 3 and job["result"]["stderr"] == "bad\n"


def test_output_beyond_the_bound_is_a_tail_in_the_job_and_whole_in_the_logs(
    sandbox: Sandbox,
) -> None:
    job = sandbox.run(workspace="big", command="head -c 200000 /dev/zero | tr '\\0' x; echo END")
    result = job["result"]
    assert job["status"] == "succeeded", job
    assert result["output_truncated"] is True
    assert result["stdout_bytes"] == 200004
    assert len(result["stdout"]) == 65536 and result["stdout"].endswith("xEND\n")
    text = sandbox.http.get(f"/v1/jobs/{job['id']}/logs", params={"format": "text"})
    assert text.status_code == 200 and len(text.content) == 200004
    records = sandbox.logs(job["id"], channel="stdout")
    assert sum(len(r["data"]) for r in records) == 200004


def test_timeout_kills_the_command_inside_docker(sandbox: Sandbox) -> None:
    began = time.monotonic()
    job = sandbox.run(workspace="slow", command="echo started; sleep 30", timeout_ms=700)
    assert time.monotonic() - began < 10
    assert job["status"] == "failed" and job["error"]["code"] == "timed_out"
    assert job["result"]["exit_code"] == 124 and job["result"]["timed_out"] is True
    assert job["result"]["stdout"] == "started\n"
    assert not any("sleep 30" in p for p in processes(job["result"]["container"]))


def test_cancel_kills_the_command_within_a_second(sandbox: Sandbox) -> None:
    job = sandbox.create(
        "sandbox.exec", {"ephemeral": True, "image": TEST_IMAGE, "command": "sleep 60"}
    )
    name = f"chaser-job.{sandbox.account}.{job['id']}.1"
    wait_until(
        lambda: any("sleep 60" in p for p in processes(name)), timeout=15, what="sleep 60 to run"
    )
    began = time.monotonic()
    assert sandbox.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    wait_until(
        lambda: not any("sleep 60" in p for p in processes(name)),
        timeout=3,
        what="the command to be killed",
    )
    assert time.monotonic() - began < 1.5
    assert sandbox.get(job["id"])["status"] == "cancelled"


def test_cancel_on_a_workspace_kills_the_command_but_not_the_workspace(sandbox: Sandbox) -> None:
    job = sandbox.create("sandbox.exec", {"workspace": "cw", "command": "echo kept > f; sleep 60"})
    sandbox.wait(job["id"], "running")
    box = wait_until(
        lambda: next(
            (c["name"] for c in containers(f"org.chaser.account={sandbox.account}")), None
        ),
        what="the workspace container",
    )
    wait_until(lambda: any("sleep 60" in p for p in processes(box)), what="sleep 60 to run")
    began = time.monotonic()
    assert sandbox.http.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    wait_until(lambda: not any("sleep 60" in p for p in processes(box)), timeout=3, what="kill")
    assert time.monotonic() - began < 1.5
    after = sandbox.run(workspace="cw", command="cat f")
    assert after["result"]["stdout"] == "kept\n"


def test_memory_limit_is_enforced(sandbox: Sandbox) -> None:
    job = sandbox.run(
        workspace="mem",
        memory_mb=16,
        command='x=$(head -c 67108864 /dev/zero | tr "\\0" a); echo survived ${#x}',
    )
    assert job["status"] == "failed", job
    assert job["result"]["exit_code"] == 137
    assert "survived" not in job["result"]["stdout"]


def test_missing_image_fails_with_image_unavailable(sandbox: Sandbox) -> None:
    image = "chaser-test/absent-image:never"
    job = sandbox.run(ephemeral=True, image=image, command="true")
    assert job["status"] == "failed"
    assert job["error"]["code"] == "image_unavailable"
    assert image in job["error"]["message"]
    pulled = [r["data"] for r in sandbox.logs(job["id"], channel="system")]
    assert any(f"pulling {image}" in line for line in pulled)


def test_bad_inputs_are_refused_naming_the_field(sandbox: Sandbox) -> None:
    cases = [
        ({"workspace": "w", "command": "true", "memory_mb": 1_000_000}, "input.memory_mb"),
        ({"workspace": "w", "command": "true", "cpu": 63}, "input.cpu"),
        ({"workspace": "w", "command": "true", "pids": 60000}, "input.pids"),
        ({"workspace": "w", "command": "true", "privileged": True}, "input.privileged"),
        ({"workspace": "w", "command": "true", "env": {"A=B": "x"}}, "input.env"),
        ({"command": "true"}, "input"),
    ]
    for job_input, field in cases:
        refused = sandbox.create("sandbox.exec", job_input, expect=422)
        assert refused["field"] == field, refused
    assert sandbox.http.get("/v1/jobs").json()["items"] == []


def test_containers_run_unprivileged(sandbox: Sandbox) -> None:
    probe = (
        "grep CapEff /proc/self/status; "
        "grep NoNewPrivs /proc/self/status; "
        "ls /var/run/docker.sock 2>&1; "
        "cat /proc/net/dev | grep -c :"
    )
    job = sandbox.run(ephemeral=True, image=TEST_IMAGE, command=probe)
    lines = job["result"]["stdout"].splitlines()
    assert lines[0].split() == ["CapEff:", "0000000000000000"]
    assert lines[1].split() == ["NoNewPrivs:", "1"]
    assert "No such file" in lines[2]
    assert lines[3] == "1"  # loopback only: no network by default for ephemeral runs

    sandbox.run(workspace="sec", command="true")
    box = containers(f"org.chaser.account={sandbox.account}", "org.chaser.role=workspace")[0]
    config = json.loads(docker("inspect", box["id"]).stdout)[0]
    host = config["HostConfig"]
    assert host["CapDrop"] == ["ALL"] and host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False and not host["Binds"]
    assert host["Memory"] > 0 and host["NanoCpus"] > 0 and host["PidsLimit"] > 0
    assert [(m["Type"], m["Destination"]) for m in config["Mounts"]] == [("volume", "/workspace")]
    assert config["Config"]["Labels"]["org.chaser.workspace"] == "sec"


def test_jobs_on_one_workspace_run_one_at_a_time_in_order(sandbox: Sandbox) -> None:
    critical = (
        "if [ -e busy ]; then echo OVERLAP; exit 1; fi; touch busy; "
        "sleep 0.3; rm busy; echo {n} >> order"
    )
    ids = [
        sandbox.create("sandbox.exec", {"workspace": "serial", "command": critical.format(n=n)})[
            "id"
        ]
        for n in range(4)
    ]
    other = sandbox.create("sandbox.exec", {"workspace": "parallel", "command": "sleep 0.3"})
    jobs = [sandbox.wait(job_id) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 4, jobs
    order = sandbox.run(workspace="serial", command="cat order")["result"]["stdout"]
    assert order.split() == ["0", "1", "2", "3"]
    for before, after in itertools.pairwise(jobs):
        assert parse_time(after["started_at"]) >= parse_time(before["finished_at"])
    # Another workspace does not wait for this one's line.
    parallel = sandbox.wait(other["id"])
    assert parse_time(parallel["started_at"]) < parse_time(jobs[-1]["started_at"])


def test_logs_stream_while_the_job_runs(sandbox: Sandbox) -> None:
    job = sandbox.create(
        "sandbox.exec",
        {"workspace": "live", "command": "for i in 1 2 3; do echo line$i; sleep 0.4; done"},
    )
    seen: list[tuple[float, str]] = []
    with httpx.stream(
        "GET",
        f"{sandbox.server.url}/v1/jobs/{job['id']}/logs",
        params={"follow": "true"},
        headers={"Authorization": f"Bearer {sandbox.key}"},
        timeout=30,
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            seen.append((time.monotonic(), json.loads(line)["data"]))
    finished = time.monotonic()
    assert "".join(data for _, data in seen) == "line1\nline2\nline3\n"
    assert seen[0][0] < finished - 0.5  # the first line came while the job still ran
    assert sandbox.get(job["id"])["status"] == "succeeded"

    followed = _chaser(sandbox, "jobs", "logs", job["id"], "--follow")
    assert followed.returncode == 0 and followed.stdout == "line1\nline2\nline3\n"


def test_cli_exec_streams_output_and_exits_with_the_command_code(sandbox: Sandbox) -> None:
    done = _chaser(
        sandbox, "jobs", "exec", "--workspace", "cli", "echo out; echo err >&2; exit 7", "--wait"
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == "out\n" and "err\n" in done.stderr
    as_json = _chaser(sandbox, "jobs", "exec", "--workspace", "cli", "echo hi", "--wait", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)["result"]["stdout"] == "hi\n"
    missing = _chaser(
        sandbox, "jobs", "exec", "--ephemeral", "--image", "chaser-test/absent:x", "true", "--wait"
    )
    assert missing.returncode == 1 and "image_unavailable" in missing.stderr


def test_sandbox_kinds_are_available(sandbox: Sandbox) -> None:
    kinds = {k["kind"]: k for k in sandbox.http.get("/v1/jobs/kinds").json()["kinds"]}
    assert kinds["sandbox.exec"]["available"] and kinds["pipeline.run"]["available"]


def _chaser(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = sandbox.server.env() | {"CHASER_API_KEY": sandbox.key}
    return subprocess.run([CHASER, *args], env=env, capture_output=True, text=True, timeout=60)
