"""A real HTTP receiver for webhook tests: an aiohttp server on 127.0.0.1 in its own thread.

It answers each request as its script says (`ok`, `fail` with a 500, `hang` past the sender's
time-out, `down` by closing the socket), then `ok` once the script is used up, and records
every request it received: headers, body, and when.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiohttp import web

from tests.support.nats import free_port


@dataclass
class Received:
    """One request as the receiver saw it, and how it answered."""

    headers: dict[str, str]
    body: bytes
    at: float
    answer: str


@dataclass
class Receiver:
    """The running receiver: its URL, its script and what it received."""

    script: list[str] = field(default_factory=list)
    hang_seconds: float = 5.0
    received: list[Received] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _runner: web.AppRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """Where webhooks should POST."""
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        """Serve in a background thread; returns once listening."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        assert ready.wait(10), "receiver did not start"
        return self

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        with self._lock:
            answer = self.script.pop(0) if self.script else "ok"
            self.received.append(Received(dict(request.headers), body, time.time(), answer))
        if answer == "fail":
            return web.Response(status=500, text="receiver failed on purpose")
        if answer == "hang":
            await asyncio.sleep(self.hang_seconds)
        if answer == "down":
            assert request.transport is not None
            request.transport.close()
        return web.Response(status=200, text="ok")

    def then(self, answers: Iterable[str]) -> None:
        """Queue answers for the next requests."""
        with self._lock:
            self.script.extend(answers)

    def snapshot(self) -> list[Received]:
        """What was received so far."""
        with self._lock:
            return list(self.received)

    def stop(self) -> None:
        """Stop serving and end the thread."""
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = None
