"""`pipeline.run` on real Docker: steps share the workspace and the container, each step is
recorded, a failure skips the rest, a step's timeout kills it."""

from __future__ import annotations

from tests.support.sandbox import Sandbox, requires_docker, sandbox, sandbox_server

__all__ = ["sandbox", "sandbox_server"]  # fixtures used by name
pytestmark = requires_docker


def test_steps_share_the_workspace_and_the_container(sandbox: Sandbox) -> None:
    job = sandbox.run(
        "pipeline.run",
        workspace="pipe",
        env={"WHO": "pipeline"},
        steps=[
            {"name": "install", "command": "echo tool > /tmp/installed; echo built > out.txt"},
            {"command": 'cat /tmp/installed out.txt; echo "$WHO $STEP"', "env": {"STEP": "two"}},
        ],
    )
    assert job["status"] == "succeeded", job
    steps = job["steps"]
    assert [(s["index"], s["name"], s["status"], s["exit_code"]) for s in steps] == [
        (0, "install", "succeeded", 0),
        (1, 'cat /tmp/installed out.txt; echo "$WHO $STEP"', "succeeded", 0),
    ]
    assert steps[1]["output_tail"] == "tool\nbuilt\npipeline two\n"
    assert steps[1]["output_bytes"] == len("tool\nbuilt\npipeline two\n")
    assert all(s["duration_ms"] >= 0 for s in steps)
    assert job["result"]["failed_step"] is None and job["result"]["exit_code"] == 0
    events = [e["type"] for e in sandbox.events(job["id"])]
    assert events.count("StepFinished") == 2
    headers = [r["data"] for r in sandbox.logs(job["id"], channel="system")]
    assert headers == ["==> step 1/2: install\n", f"==> step 2/2: {steps[1]['name']}\n"]
    files = sandbox.run(workspace="pipe", command="cat out.txt")
    assert files["result"]["stdout"] == "built\n"


def test_first_failing_step_fails_the_job_and_skips_the_rest(sandbox: Sandbox) -> None:
    job = sandbox.run(
        "pipeline.run",
        workspace="fails",
        steps=[
            {"command": "echo one"},
            {"command": "echo allowed; exit 2", "continue_on_error": True},
            {"command": "echo three; exit 5"},
            {"command": "echo never > never.txt"},
            {"command": "echo never again"},
        ],
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "step_failed"
    assert [s["status"] for s in job["steps"]] == [
        "succeeded",
        "failed",
        "failed",
        "skipped",
        "skipped",
    ]
    assert [s["exit_code"] for s in job["steps"]] == [0, 2, 5, None, None]
    assert job["result"]["failed_step"] == 2 and job["result"]["exit_code"] == 5
    assert job["attempt"] == 1
    never = sandbox.run(workspace="fails", command="ls never.txt 2>&1 || true")
    assert "No such file" in never["result"]["stdout"]


def test_a_step_over_its_timeout_is_killed_and_recorded_timed_out(sandbox: Sandbox) -> None:
    job = sandbox.run(
        "pipeline.run",
        workspace="slowpipe",
        steps=[
            {"command": "echo fast"},
            {"command": "echo waiting; sleep 30", "timeout_ms": 600},
            {"command": "echo skipped"},
        ],
    )
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timed_out"
    assert [s["status"] for s in job["steps"]] == ["succeeded", "timed_out", "skipped"]
    assert job["steps"][1]["exit_code"] == 124
    assert job["steps"][1]["output_tail"] == "waiting\n"
    assert job["steps"][1]["duration_ms"] < 10_000
    assert job["result"]["timed_out"] is True
