"""`chaser jobs ...` end to end: the real CLI against a real `chaser serve`."""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from cli.main import build_parser
from tests.support.server import CHASER, ChaserServer, _free_port, kill_embedded_nats

TERMINAL = {"succeeded", "failed", "cancelled"}
PRODUCT_KINDS = {
    "sandbox.exec",
    "pipeline.run",
    "browser.action",
    "browser.scrape",
    "github.runner",
    "session.terminate",
    "session.bulk_terminate",
    "workspace.delete",
    "workspace.bulk_delete",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """One server for the module; tests keep apart by account."""
    # Only the system executors: the sandbox jobs these tests create must stay queued.
    srv = ChaserServer(
        tmp_path_factory.mktemp("cli") / "data", env={"CHASER_EXECUTOR_FAMILIES": "system"}
    )
    try:
        yield srv.start()
    finally:
        # A short grace: after a running job is cancelled the server's NATS drain can hang
        # for its 30 s default; a killed server leaves its embedded nats-server behind.
        code = srv.stop(timeout=5)
        if code is not None and code < 0:
            kill_embedded_nats(srv.data_dir)


@pytest.fixture(scope="module")
def key(server: ChaserServer) -> str:
    """A key for the single account `acme`."""
    return server.create_key("acme")


def chaser(
    server: ChaserServer, key: str | None, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `chaser` with the server's environment, `CHASER_API_KEY=key` and extra variables."""
    full = server.env()
    if key is not None:
        full["CHASER_API_KEY"] = key
    full.update(env)
    return subprocess.run(
        [CHASER, *args], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a successful `--json` command printed."""
    assert result.returncode == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def poll(
    server: ChaserServer, key: str, job_id: str, statuses: set[str], account: str | None = None
) -> dict[str, Any]:
    """Wait (over plain HTTP) until the job is in one of `statuses`."""
    with server.client(key, account) as http:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            job: dict[str, Any] = http.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in statuses:
                return job
            time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {statuses}: {job}")


def test_create_and_wait_succeeds(server: ChaserServer, key: str) -> None:
    job = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "create",
            "--kind",
            "system.echo",
            "--input",
            '{"message": "hi"}',
            "--max-attempts",
            "2",
            "--wait",
            "--json",
        )
    )
    assert job["kind"] == "system.echo"
    assert job["status"] == "succeeded"
    assert job["account"] == "acme"
    assert job["input"] == {"message": "hi"}
    assert job["max_attempts"] == 2
    assert job["result"] == {"message": "hi", "attempt": 1}
    assert job["error"] is None
    assert job["id"].startswith("job_")

    shown = chaser(server, key, "jobs", "get", job["id"])
    assert shown.returncode == 0
    assert job["id"] in shown.stdout and "succeeded" in shown.stdout


def test_failing_job_with_wait_exits_1(server: ChaserServer, key: str) -> None:
    result = chaser(
        server,
        key,
        "jobs",
        "create",
        "--kind",
        "system.echo",
        "--input",
        '{"fail": true}',
        "--wait",
    )
    assert result.returncode == 1, result.stderr
    assert "failed" in result.stdout
    assert "echo_failed" in result.stdout


def test_cancel_sleeping_job(server: ChaserServer, key: str) -> None:
    job = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "create",
            "--kind",
            "system.echo",
            "--input",
            '{"sleep_ms": 60000}',
            "--json",
        )
    )
    poll(server, key, job["id"], {"running"})

    cancelled = ok_json(chaser(server, key, "jobs", "cancel", job["id"], "--json"))
    assert cancelled["id"] == job["id"]
    assert cancelled["status"] == "cancelled"

    waited = chaser(server, key, "jobs", "wait", job["id"])
    assert waited.returncode == 1
    assert "cancelled" in waited.stdout

    again = chaser(server, key, "jobs", "cancel", job["id"])
    assert again.returncode == 1
    assert again.stderr.startswith("chaser: 409 Conflict: ")


def test_retry_failed_job(server: ChaserServer, key: str) -> None:
    failed = chaser(
        server,
        key,
        "jobs",
        "create",
        "--kind",
        "system.echo",
        "--input",
        '{"fail": true}',
        "--wait",
        "--json",
    )
    assert failed.returncode == 1
    job = json.loads(failed.stdout)
    assert job["status"] == "failed" and job["attempt"] == 1

    retried = ok_json(chaser(server, key, "jobs", "retry", job["id"], "--json"))
    assert retried["id"] == job["id"]
    assert retried["attempt"] == 2
    assert retried["status"] != "failed"

    final = chaser(server, key, "jobs", "wait", job["id"], "--json")
    assert final.returncode == 1
    assert json.loads(final.stdout)["attempt"] == 2


def test_list_filters_and_pagination(server: ChaserServer) -> None:
    key = server.create_key("lister", "spare")
    with server.client(key, "lister") as http:
        made = [
            http.post("/v1/jobs", json=body).json()["id"]
            for body in (
                {"kind": "system.echo", "input": {"message": 1}},
                {"kind": "system.echo", "input": {"message": 2}},
                {"kind": "system.echo", "input": {"fail": True}},
                {"kind": "sandbox.exec", "input": {"workspace": "w", "command": "true"}},
                {"kind": "sandbox.exec", "input": {"workspace": "w", "command": "false"}},
            )
        ]
    for job_id in made[:3]:
        poll(server, key, job_id, TERMINAL, "lister")

    page = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "list",
            "--account",
            "lister",
            "--json",
            "--status",
            "succeeded",
            "--kind",
            "system.echo",
        )
    )
    assert sorted(j["id"] for j in page["items"]) == sorted(made[:2])

    page = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "list",
            "--json",
            "--status",
            "failed",
            "--status",
            "queued",
            CHASER_ACCOUNT="lister",
        )
    )
    assert {j["id"] for j in page["items"]} == set(made[2:])

    first = ok_json(
        chaser(server, key, "jobs", "list", "--account", "lister", "--limit", "2", "--json")
    )
    assert len(first["items"]) == 2 and first["next_cursor"]

    everything = ok_json(
        chaser(
            server, key, "jobs", "list", "--account", "lister", "--limit", "2", "--all", "--json"
        )
    )
    assert [j["id"] for j in everything["items"]] == made[::-1]
    assert everything["next_cursor"] is None

    table = chaser(server, key, "jobs", "list", "--account", "lister", "--kind", "sandbox.exec")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "KIND", "STATUS", "ATTEMPT", "CREATED_AT"]
    assert [row.split()[:4] for row in rows] == [
        [made[4], "sandbox.exec", "queued", "1"],
        [made[3], "sandbox.exec", "queued", "1"],
    ]

    spare = ok_json(chaser(server, key, "jobs", "list", "--account", "spare", "--json"))
    assert spare == {"items": [], "next_cursor": None}

    ambiguous = chaser(server, key, "jobs", "list")
    assert ambiguous.returncode == 1
    assert ambiguous.stderr.startswith("chaser: 400 Account required: ")


def test_kinds_lists_the_product_kinds(server: ChaserServer, key: str) -> None:
    kinds = ok_json(chaser(server, key, "jobs", "kinds", "--json"))["kinds"]
    assert PRODUCT_KINDS.issubset(k["kind"] for k in kinds)
    for entry in kinds:
        assert set(entry) == {"kind", "description", "available", "input_schema"}
    echo = next(k for k in kinds if k["kind"] == "system.echo")
    assert echo["available"] is True


def test_exec_workspace_creates_sandbox_job(server: ChaserServer, key: str) -> None:
    job = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "exec",
            "--workspace",
            "my-project",
            "npm test",
            "--env",
            "CI=1",
            "--timeout-ms",
            "5000",
            "--json",
        )
    )
    assert job["kind"] == "sandbox.exec"
    assert job["status"] == "queued"
    assert job["input"] == {
        "workspace": "my-project",
        "command": "npm test",
        "env": {"CI": "1"},
        "timeout_ms": 5000,
    }


def test_exec_ephemeral_creates_sandbox_job(server: ChaserServer, key: str) -> None:
    job = ok_json(
        chaser(
            server, key, "jobs", "exec", "--ephemeral", "--image", "node:20", "node -v", "--json"
        )
    )
    assert job["kind"] == "sandbox.exec"
    assert job["input"] == {"ephemeral": True, "image": "node:20", "command": "node -v"}

    missing = chaser(server, key, "jobs", "exec", "--ephemeral", "node -v")
    assert missing.returncode == 2
    assert "--image" in missing.stderr


def test_scrape_creates_browser_job(server: ChaserServer, key: str) -> None:
    job = ok_json(
        chaser(
            server,
            key,
            "jobs",
            "scrape",
            "--url",
            "https://example.com",
            "--selector",
            "h1",
            "--json",
        )
    )
    assert job["kind"] == "browser.scrape"
    assert job["input"] == {"url": "https://example.com", "selector": "h1"}


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            'chaser jobs exec --workspace my-project "npm test" --wait --json',
            {"workspace": "my-project", "command": "npm test", "wait": True},
        ),
        (
            'chaser jobs exec --ephemeral --image node:20 "node -v" --wait --json',
            {"ephemeral": True, "image": "node:20", "command": "node -v", "wait": True},
        ),
        (
            'chaser jobs scrape --url "https://example.com" --wait --json',
            {"url": "https://example.com", "wait": True},
        ),
        ("chaser jobs kinds --json", {"jobs_command": "kinds"}),
    ],
)
def test_product_document_lines_parse(line: str, expected: dict[str, Any]) -> None:
    args = vars(build_parser().parse_args(shlex.split(line)[1:]))
    assert args["json"] is True
    assert {name: args[name] for name in expected} == expected


def test_bad_input_exits_2(server: ChaserServer, key: str) -> None:
    for text in ("[1, 2]", "{not json"):
        result = chaser(server, key, "jobs", "create", "--kind", "system.echo", "--input", text)
        assert result.returncode == 2
        assert "--input" in result.stderr


def test_bad_key_exits_1_with_detail(server: ChaserServer) -> None:
    result = chaser(server, "chs_nope_nope", "jobs", "list")
    assert result.returncode == 1
    assert result.stderr.strip() == "chaser: 401 Unauthorized: unknown or revoked API key"
    assert result.stdout == ""


def test_unreachable_api_exits_1(server: ChaserServer, key: str) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    result = chaser(server, key, "jobs", "kinds", CHASER_API_URL=url)
    assert result.returncode == 1
    assert result.stderr.startswith(f"chaser: cannot reach the API at {url}")


def test_wait_timeout_exits_124(server: ChaserServer, key: str) -> None:
    with server.client(key) as http:
        job = http.post("/v1/jobs", json={"kind": "system.echo", "input": {"sleep_ms": 60000}})
        job_id = job.json()["id"]
        try:
            started = time.monotonic()
            result = chaser(server, key, "jobs", "wait", job_id, "--timeout", "0.5")
            assert result.returncode == 124
            assert job_id in result.stderr and "timed out" in result.stderr
            assert time.monotonic() - started < 10
        finally:
            http.post(f"/v1/jobs/{job_id}/cancel")


def test_missing_key_is_explained(server: ChaserServer) -> None:
    result = chaser(server, None, "jobs", "kinds")
    assert result.returncode == 1
    assert "CHASER_API_KEY" in result.stderr
