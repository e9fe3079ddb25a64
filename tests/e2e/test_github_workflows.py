"""`github.runner` on real Docker with the workflows of tests/github_workflows: each step's
outcome and outputs, env layering, matrices, composite and provided actions, services,
timeouts, cancellation, masking, and `no_matching_runner`."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.github import GithubAccount, start_github_server
from tests.support.sandbox import TEST_IMAGE, docker, requires_docker, stop_server, wait_until
from tests.support.server import ChaserServer

HERE = Path(__file__).resolve().parents[1] / "github_workflows"
REPO = HERE / "repo"
WEB_IMAGE = "chaser-test/web:latest"
SECRET = "s3cr3t-deploy-value"
pytestmark = requires_docker


def build_web_image() -> None:
    """A service image: busybox httpd serving one page (made locally, never pulled)."""
    if docker("image", "inspect", WEB_IMAGE, check=False).returncode == 0:
        return
    name = "chaser-test-web-build"
    docker("rm", "-f", name, check=False)
    docker(
        "run",
        "--name",
        name,
        TEST_IMAGE,
        "sh",
        "-c",
        "mkdir -p /www && echo served-page > /www/index.html",
    )
    change = 'CMD ["httpd", "-f", "-p", "8080", "-h", "/www"]'
    docker("commit", "--change", change, name, WEB_IMAGE)
    docker("rm", "-f", name, check=False)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    build_web_image()
    running = start_github_server(
        tmp_path_factory.mktemp("gh") / "data", CHASER_ACTIONS_DIR=str(HERE / "actions")
    )
    try:
        yield running
    finally:
        stop_server(running)


@pytest.fixture(scope="module")
def account(server: ChaserServer) -> Iterator[GithubAccount]:
    acct = GithubAccount(server)
    acct.upload("repo", REPO)
    try:
        yield acct
    finally:
        acct.cleanup()


def steps_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A job's StepFinished records by step name."""
    return {step["name"]: step for step in job["steps"]}


def rows_by_job(body: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for row in body["jobs"]:
        rows.setdefault(row["job"], []).append(row)
    return rows


@pytest.fixture(scope="module")
def ci(account: GithubAccount) -> dict[str, Any]:
    code, body, stderr = account.run_workflow(
        ".github/workflows/ci.yml",
        "repo",
        "--secret",
        f"DEPLOY_TOKEN={SECRET}",
        "--actor",
        "chaser",
    )
    return {"code": code, "body": body, "stderr": stderr, "rows": rows_by_job(body)}


def test_the_workflow_runs_in_needs_order_and_fails_on_its_failing_job(ci: dict[str, Any]) -> None:
    rows = ci["rows"]
    assert ci["code"] == 1, ci
    assert [r["conclusion"] for r in rows["lint"]] == ["success"]
    assert sorted((r["matrix"]["python"], r["conclusion"]) for r in rows["test"]) == [
        ("3.11", "success"),
        ("3.12", "success"),
    ]
    assert [r["conclusion"] for r in rows["report"]] == ["failure"]
    assert ci["body"]["conclusion"] == "failure"


def test_env_layers_outputs_and_actions(ci: dict[str, Any], account: GithubAccount) -> None:
    job = account.job(ci["rows"]["lint"][0]["job_id"])
    assert job["status"] == "succeeded", job
    steps = steps_of(job)
    outputs = {s["result"]["id"]: s["result"]["outputs"] for s in job["steps"] if s["result"]["id"]}
    assert outputs["layers"] == {"layers": "step/from-workflow"}
    assert outputs["readback"] == {"seen": "step/from-workflow"}
    assert outputs["notes"] == {"notes": "line one\nline two"}
    assert outputs["python"] == {"answer": "42"}
    assert outputs["cwd"] == {"cwd": "/github/workspace/src"}
    requirements = (REPO / "requirements.txt").read_bytes()
    expected = hashlib.sha256(hashlib.sha256(requirements).digest()).hexdigest()
    assert outputs["hash"] == {"hash": expected}
    assert outputs["greet"] == {"greeting": "Hello, chaser!"}
    assert outputs["after"] == {"greeted": "greeted=chaser Hello, chaser!"[len("greeted=") :]}
    assert all(s["status"] == "succeeded" for s in steps.values()), steps
    result = job["result"]
    assert result["outputs"] == {"version": f"1.2.{1}", "notes": "line one\nline two"}
    assert "level=step shared=from-workflow" in result["summary"]
    assert result["runner"]["name"] == "ubuntu"


def test_secrets_and_masked_values_never_leave_the_job(
    ci: dict[str, Any], account: GithubAccount
) -> None:
    job_id = ci["rows"]["lint"][0]["job_id"]
    job = account.job(job_id)
    log = account.logs(job_id)
    assert "token is ***" in log
    assert "password *** must not show" in log
    everything = json.dumps(job) + log
    assert SECRET not in everything and "hunter2" not in everything
    assert "secrets" not in job["input"] and job["input"]["secret_names"] == ["DEPLOY_TOKEN"]


def test_matrix_legs_continue_on_error_and_needs(
    ci: dict[str, Any], account: GithubAccount
) -> None:
    for row in ci["rows"]["test"]:
        job = account.job(row["job_id"])
        steps = steps_of(job)
        assert steps["Show"]["result"]["outputs"] == {"version": "1.2.1"}
        flaky = steps["Flaky"]
        assert (flaky["status"], flaky["exit_code"]) == ("failed", 7)
        assert (flaky["result"]["outcome"], flaky["result"]["conclusion"]) == ("failure", "success")
        assert steps["Recovered"]["status"] == "succeeded"
        assert "conclusion success" in steps["Recovered"]["output_tail"]
        assert job["input"]["matrix"] == row["matrix"]
        assert job["status"] == "succeeded"


def test_failure_skips_what_follows_and_runs_failure_steps(
    ci: dict[str, Any], account: GithubAccount
) -> None:
    job = account.job(ci["rows"]["report"][0]["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "step_failed"
    assert [(s["name"], s["status"]) for s in job["steps"]] == [
        ("Fails", "failed"),
        ("Skipped after failure", "skipped"),
        ("Runs on failure", "succeeded"),
    ]
    assert "cleaning up after line one" in job["steps"][2]["output_tail"]


def test_services_are_reachable_by_id_and_docker_steps_share_the_workspace(
    account: GithubAccount,
) -> None:
    code, body, stderr = account.run_workflow(".github/workflows/services.yml", "repo")
    assert code == 0, (body, stderr)
    job = account.job(body["jobs"][0]["job_id"])
    steps = steps_of(job)
    assert steps["Reach the service by its id"]["result"]["outputs"] == {"body": "served-page"}
    assert "ran in docker" in steps["Docker step"]["output_tail"]
    assert steps["Docker step wrote the workspace"]["status"] == "succeeded"
    leftovers = docker("ps", "-aq", "--filter", f"label=org.chaser.job={job['id']}")
    assert leftovers.stdout.split() == []


def test_step_and_job_timeouts(account: GithubAccount) -> None:
    code, body, _ = account.run_workflow(".github/workflows/timeouts.yml", "repo")
    assert code == 1
    rows = rows_by_job(body)
    step_job = account.job(rows["step-timeout"][0]["job_id"])
    assert [s["status"] for s in step_job["steps"]] == ["timed_out", "succeeded"]
    assert step_job["steps"][0]["exit_code"] == 124
    assert "cleanup ran" in step_job["steps"][1]["output_tail"]
    job_job = account.job(rows["job-timeout"][0]["job_id"])
    assert job_job["error"]["code"] == "timed_out"
    assert [s["status"] for s in job_job["steps"]] == ["timed_out", "succeeded"]
    assert "job cleanup ran" in job_job["steps"][1]["output_tail"]


def test_cancel_stops_the_step_and_runs_always_steps(account: GithubAccount) -> None:
    created = account.http.post(
        "/v1/jobs",
        json={
            "kind": "github.runner",
            "input": {"workspace": "repo", "workflow_path": ".github/workflows/slow.yml"},
        },
    ).json()
    job_id = created["id"]
    wait_until(lambda: "started" in account.logs(job_id), timeout=30, what="the slow step")
    began = time.monotonic()
    assert account.http.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    containers = f"label=org.chaser.job={job_id}"
    wait_until(
        lambda: not docker("ps", "-aq", "--filter", containers).stdout.split(),
        timeout=30,
        what="cleanup",
    )
    log = account.logs(job_id)
    assert "cancel handler ran" in log and "always ran" in log
    assert "should not run" not in log
    assert time.monotonic() - began < 20
    assert account.job(job_id)["status"] == "cancelled"


def test_provided_actions_run_and_others_are_unavailable(account: GithubAccount) -> None:
    code, body, _ = account.run_workflow(".github/workflows/provided.yml", "repo")
    assert code == 1
    job = account.job(body["jobs"][0]["job_id"])
    statuses = [(s["result"]["id"], s["status"]) for s in job["steps"]]
    assert statuses == [("hello", "succeeded"), (None, "succeeded"), ("missing", "failed")]
    assert job["steps"][0]["result"]["outputs"] == {"said": "hello chaser"}
    assert job["error"]["code"] == "action_unavailable"
    assert "someone/unknown-action@v3" in job["error"]["message"]


def test_no_matching_runner_after_the_queue_timeout(account: GithubAccount) -> None:
    created = account.http.post(
        "/v1/jobs",
        json={
            "kind": "github.runner",
            "input": {
                "workspace": "repo",
                "workflow_path": ".github/workflows/nowhere.yml",
                "queue_timeout_ms": 2500,
            },
        },
    ).json()
    time.sleep(1.0)
    assert account.job(created["id"])["status"] == "queued"
    job = wait_until(
        lambda: (j := account.job(created["id"]))["status"] == "failed" and j,
        timeout=30,
        what="the failure",
    )
    assert job["error"]["code"] == "no_matching_runner"
    assert "gpu" in job["error"]["message"] and "a100" in job["error"]["message"]
    assert job["started_at"] is None


def test_an_invalid_expression_fails_the_job_naming_it(account: GithubAccount) -> None:
    workflow = (
        "on: push\njobs:\n  j:\n    runs-on: self-hosted\n"
        "    steps:\n      - run: echo ${{ format('{0}' }}\n"
    )
    created = account.http.post(
        "/v1/jobs",
        json={"kind": "github.runner", "input": {"workspace": "repo", "workflow": workflow}},
    ).json()
    job = wait_until(
        lambda: (j := account.job(created["id"]))["status"] in ("failed", "succeeded") and j,
        timeout=30,
        what="the end",
    )
    assert job["error"]["code"] == "expression_error"
    assert "format('{0}'" in job["error"]["message"]


def test_runners_are_listed_with_labels_image_and_load(account: GithubAccount) -> None:
    page = account.http.get("/v1/runners").json()
    names = {r["name"]: r for r in page["items"]}
    assert {"ubuntu", "legacy"} <= set(names)
    assert "ubuntu-latest" in names["ubuntu"]["labels"]
    assert names["ubuntu"]["status"] in ("idle", "busy") and names["ubuntu"]["capacity"] == 8
    listed = account.cli("runner", "list")
    assert listed.returncode == 0 and "ubuntu-latest" in listed.stdout
