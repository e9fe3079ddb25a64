"""Run real `chaser serve` processes for integration and end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CHASER = str(Path(sys.executable).parent / "chaser")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ChaserServer:
    """One `chaser serve` child process on a data directory, with its own HTTP port."""

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = _free_port()
        self.extra_env = dict(env or {})
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / f"serve-{self.port}.log"

    @property
    def url(self) -> str:
        """Base URL of the API."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment the server (and CLI commands against it) run with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHASER_")}
        env.update(
            {
                "CHASER_DATA_DIR": str(self.data_dir),
                "CHASER_PORT": str(self.port),
                "CHASER_API_URL": self.url,
                "CHASER_PARTITIONS": "3",
                "CHASER_LOG_JSON": "1",
                "CHASER_LEASE_SECONDS": "3",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, timeout: float = 30.0) -> ChaserServer:
        """Start and wait until /readyz answers 200."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CHASER, "serve"], env=self.env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if "api" not in self.extra_env.get("CHASER_ROLES", "api"):
            return self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"chaser serve exited:\n{self.log_path.read_text()[-4000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"chaser serve not ready:\n{self.log_path.read_text()[-4000:]}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would (the embedded nats-server, its own session, lives on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def restart(self) -> ChaserServer:
        """Stop and start again on the same data directory and port."""
        self.stop()
        return self.start()

    def cli(
        self, *args: str, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a `chaser` command against this server."""
        result = subprocess.run(
            [CHASER, *args], env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"chaser {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result

    def create_key(self, *accounts: str) -> str:
        """A new API key for the given accounts."""
        flags = [arg for account in accounts for arg in ("--account", account)]
        out = self.cli("keys", "create", *flags, "--json")
        key: str = json.loads(out.stdout)["key"]
        return key

    def client(self, key: str, account: str | None = None) -> httpx.Client:
        """An HTTP client authenticated with `key` (and an account header when given)."""
        headers = {"Authorization": f"Bearer {key}"}
        if account is not None:
            headers["X-Chaser-Account"] = account
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def kill_embedded_nats(data_dir: Path) -> None:
    """Stop an embedded nats-server left behind by a killed `chaser serve`."""
    info = data_dir / "nats.json"
    if not info.exists():
        return
    pid = json.loads(info.read_text()).get("pid")
    if pid:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
