"""Helpers of the real-Docker `github.runner` tests: a server with runner label sets on the
local runner image, workspaces uploaded from local folders, and `chaser runner
run-workflow` against it."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.sandbox import TEST_IMAGE, docker, start_sandbox_server, stop_server
from tests.support.server import CHASER, ChaserServer

RUNNER_IMAGE = os.environ.get("CHASER_RUNNER_IMAGE", "chaser-test/runner:latest")
RUNNERS = (
    f"self-hosted,linux,x64,ubuntu-latest,name=ubuntu,chaser={RUNNER_IMAGE},capacity=8;"
    f"ubuntu-18.04,ubuntu-16.04,macos-latest,name=legacy,chaser={RUNNER_IMAGE},capacity=8"
)


def start_github_server(data_dir: Path, **env: str) -> ChaserServer:
    """A server serving the runner label sets above (the runner image must exist)."""
    if docker("image", "inspect", RUNNER_IMAGE, check=False).returncode != 0:
        pytest.fail(f"runner image {RUNNER_IMAGE} is missing: run `make services` to build it")
    settings = {
        "CHASER_RUNNERS": RUNNERS,
        "CHASER_EXECUTOR_FAMILIES": "system,lifecycle,sandbox,github",
        "CHASER_ACCOUNT_CONCURRENCY": "64",
        "CHASER_SANDBOX_WARM_CONTAINERS": "0",
        **env,
    }
    return start_sandbox_server(data_dir, **settings)


class GithubAccount:
    """One fresh account on a server, with a key, for CLI and API calls."""

    def __init__(self, server: ChaserServer) -> None:
        self.server = server
        self.account = f"gh-{uuid.uuid4().hex[:10]}"
        self.key = server.create_key(self.account)
        self.http = server.client(self.key)

    def env(self) -> dict[str, str]:
        """The environment of CLI commands for this account."""
        return {**self.server.env(), "CHASER_API_KEY": self.key}

    def cli(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run `chaser ...` as this account."""
        return subprocess.run(
            [CHASER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )

    def upload(self, workspace: str, directory: Path) -> None:
        """`chaser workspaces upload`."""
        done = self.cli("workspaces", "upload", workspace, str(directory))
        assert done.returncode == 0, done.stderr

    def run_workflow(
        self, path: str, workspace: str, *flags: str
    ) -> tuple[int, dict[str, Any], str]:
        """`chaser runner run-workflow ... --wait --json`: exit code, JSON, stderr."""
        done = self.cli(
            "runner", "run-workflow", path, "--workspace", workspace, "--wait", "--json", *flags
        )
        try:
            body = json.loads(done.stdout) if done.stdout.strip() else {}
        except json.JSONDecodeError:
            body = {"raw": done.stdout}
        return done.returncode, body, done.stderr

    def job(self, job_id: str) -> Any:
        """GET one job."""
        response = self.http.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def logs(self, job_id: str) -> str:
        """A job's whole log as text."""
        response = self.http.get(f"/v1/jobs/{job_id}/logs", params={"format": "text"})
        assert response.status_code == 200, response.text
        return response.text

    def cleanup(self) -> None:
        """Remove this account's volumes and containers."""
        listed = docker("ps", "-aq", "--filter", f"label=org.chaser.account={self.account}")
        for container in listed.stdout.split():
            docker("rm", "-f", container, check=False)
        volumes = docker(
            "volume", "ls", "-q", "--filter", f"label=org.chaser.account={self.account}"
        )
        for volume in volumes.stdout.split():
            docker("volume", "rm", "-f", volume, check=False)
        self.http.close()


def github_server_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChaserServer]:
    """Body of a module-scoped server fixture."""
    server = start_github_server(tmp_path_factory.mktemp("github") / "data")
    try:
        yield server
    finally:
        stop_server(server)


__all__ = ["TEST_IMAGE", "GithubAccount", "github_server_fixture", "start_github_server"]
