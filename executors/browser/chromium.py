"""Finding and launching headless Chromium, and the browser-level DevTools connection."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import structlog

from executors.browser.cdp import CdpConnection
from executors.browser.errors import BrowserError, BrowserLost, LaunchFailed
from executors.browser.limits import MAX_MESSAGE_BYTES

log = structlog.get_logger("chaser.browser")

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
# Debian's /usr/bin/chromium is a shell script that execs this (and costs 15-20 ms per start).
DEBIAN_REAL = Path("/usr/lib/chromium/chromium")
LAUNCH_TIMEOUT = 30.0
DEVTOOLS_LINE = re.compile(rb"DevTools listening on (ws://\S+)")
STDERR_LINES_LOGGED = 50
_DRAINS: set[asyncio.Task[None]] = set()


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"#!"
    except OSError:
        return False


def find_chromium(configured: str | None = None) -> str | None:
    """The Chromium binary to run: `configured` (a path or a name on PATH), else the first
    browser found on PATH; a Debian wrapper script is replaced by the binary it runs."""
    names = (configured,) if configured else CANDIDATES
    for name in names:
        found = shutil.which(name) if name else None
        if found is None:
            continue
        path = Path(found).resolve()
        if _is_script(path) and DEBIAN_REAL.is_file() and os.access(DEBIAN_REAL, os.X_OK):
            return str(DEBIAN_REAL)
        return str(path)
    return None


def launch_args(binary: str, *, user_data_dir: str, proxy_url: str, as_root: bool) -> list[str]:
    """The command line of one headless browser. Pure."""
    args = [
        binary,
        "--headless",
        "--remote-debugging-port=0",
        "--remote-debugging-address=127.0.0.1",
        "--no-startup-window",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-gpu",
        "--disable-quic",
        "--disable-extensions",
        "--disable-breakpad",
        "--disable-dev-shm-usage",
        "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider",
        "--password-store=basic",
        "--mute-audio",
        "--hide-scrollbars",
        # Every request goes through the egress proxy, loopback included; WebRTC may not
        # send UDP around it.
        f"--proxy-server={proxy_url}",
        "--proxy-bypass-list=<-loopback>",
        "--force-webrtc-ip-handling-policy=disable_non_proxied_udp",
        f"--user-data-dir={user_data_dir}",
    ]
    if as_root:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    return args


def _profile_dir(data_dir: Path, name: str) -> str:
    """A fresh, empty user-data directory for one browser."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{name}-", dir=data_dir)


def _running_as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


class Browser:
    """One Chromium process and its browser-level DevTools connection."""

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        conn: CdpConnection,
        *,
        port: int,
        user_data_dir: str,
        name: str,
    ) -> None:
        self.process = process
        self.conn = conn
        self.port = port
        self.user_data_dir = user_data_dir
        self.name = name
        self.active = 0
        self.dead = asyncio.Event()
        self._closing = False
        self._exit_callbacks: list[Callable[[Browser], None]] = []
        self._watch = asyncio.create_task(self._wait_exit(), name=f"watch-{name}")
        conn.on_close(lambda _error: self._connection_closed())

    @classmethod
    async def launch(cls, binary: str, *, data_dir: Path, proxy_url: str, name: str) -> Browser:
        """Start a headless Chromium and connect to it."""
        user_data_dir = await asyncio.to_thread(_profile_dir, data_dir, name)
        args = launch_args(
            binary, user_data_dir=user_data_dir, proxy_url=proxy_url, as_root=_running_as_root()
        )
        try:
            process = await asyncio.create_subprocess_exec(
                *args,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            shutil.rmtree(user_data_dir, ignore_errors=True)
            raise LaunchFailed(f"cannot run {binary}: {exc}") from exc
        try:
            url = await asyncio.wait_for(_devtools_url(process, name), LAUNCH_TIMEOUT)
            port = int(url.split(":")[2].split("/")[0])
            conn = await CdpConnection.open(
                url,
                name=name,
                max_size=MAX_MESSAGE_BYTES,
                lost=lambda: BrowserLost(f"browser {name} went away"),
            )
        except (TimeoutError, BrowserError, ValueError) as exc:
            _kill(process)
            await process.wait()
            shutil.rmtree(user_data_dir, ignore_errors=True)
            raise LaunchFailed(f"{binary} did not open its DevTools port: {exc!r}") from exc
        log.info("browser_launched", browser=name, pid=process.pid, port=port)
        return cls(process, conn, port=port, user_data_dir=user_data_dir, name=name)

    @property
    def alive(self) -> bool:
        """Whether the process runs and its connection is open."""
        return self.process.returncode is None and not self.conn.closed

    def on_exit(self, callback: Callable[[Browser], None]) -> None:
        """Call `callback(browser)` once when the browser dies or is closed."""
        self._exit_callbacks.append(callback)

    def _connection_closed(self) -> None:
        # A browser whose DevTools connection dropped is of no use: make sure it is gone.
        self.dead.set()
        if self.process.returncode is None and not self._closing:
            _kill(self.process)

    async def _wait_exit(self) -> None:
        code = await self.process.wait()
        self.dead.set()
        self.conn.fail(BrowserLost(f"browser {self.name} exited with {code}"))
        log.info("browser_exited", browser=self.name, code=code)
        callbacks, self._exit_callbacks = self._exit_callbacks, []
        for callback in callbacks:
            callback(self)
        await asyncio.to_thread(shutil.rmtree, self.user_data_dir, True)

    async def close(self) -> None:
        """Close the browser (politely, then by force) and remove its profile."""
        self._closing = True
        if self.process.returncode is None:
            with contextlib.suppress(BrowserError, TimeoutError):
                await asyncio.wait_for(self.conn.call("Browser.close"), 2.0)
            try:
                await asyncio.wait_for(asyncio.shield(self.process.wait()), 3.0)
            except TimeoutError:
                _kill(self.process)
        await self.conn.close()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch


def _kill(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the browser's whole process group (renderers and zygotes with it)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _devtools_url(process: asyncio.subprocess.Process, name: str) -> str:
    """Read stderr until the DevTools line; keep draining it afterwards."""
    assert process.stderr is not None
    while True:
        line = await process.stderr.readline()
        if not line:
            raise LaunchFailed(f"browser {name} exited before opening DevTools")
        match = DEVTOOLS_LINE.search(line)
        if match:
            task = asyncio.get_running_loop().create_task(_drain(process.stderr, name))
            _DRAINS.add(task)
            task.add_done_callback(_DRAINS.discard)
            return match.group(1).decode()


async def _drain(stream: asyncio.StreamReader, name: str) -> None:
    logged = 0
    with contextlib.suppress(Exception):
        while line := await stream.readline():
            if logged < STDERR_LINES_LOGGED:
                logged += 1
                log.debug("browser_stderr", browser=name, line=line.decode(errors="replace")[:500])
