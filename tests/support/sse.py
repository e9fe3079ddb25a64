"""A Server-Sent Events reader for tests: follows a stream in a thread and keeps what it got."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from typing import Any

import httpx

from cli.sse import SseMessage, parse_sse


class SseReader:
    """Reads `GET path` as an event stream in the background until closed or ended."""

    def __init__(self, base_url: str, path: str, headers: dict[str, str], **params: Any) -> None:
        self.messages: list[SseMessage] = []
        self.status: int | None = None
        self.ended = threading.Event()
        self._client = httpx.Client(base_url=base_url, headers=headers, timeout=None)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(path, params), daemon=True)
        self._connected = threading.Event()
        self._socket: socket.socket | None = None

    def start(self) -> SseReader:
        """Connect; returns once the response headers arrived."""
        self._thread.start()
        assert self._connected.wait(10), "no response from the event stream"
        return self

    def _run(self, path: str, params: dict[str, Any]) -> None:
        try:
            with self._client.stream("GET", path, params=params) as response:
                self.status = response.status_code
                stream = response.extensions.get("network_stream")
                self._socket = stream.get_extra_info("socket") if stream is not None else None
                self._connected.set()
                for message in parse_sse(response.iter_lines()):
                    with self._lock:
                        self.messages.append(message)
        except httpx.HTTPError:
            pass
        finally:
            self._connected.set()
            self.ended.set()

    def events(self) -> list[dict[str, Any]]:
        """The decoded `data` of every message so far."""
        with self._lock:
            return [json.loads(m.data) for m in self.messages]

    def wait(self, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        """Block until at least `count` messages arrived."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.events()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.events())} of {count} events within {timeout}s")

    def close(self) -> None:
        """Drop the connection (shutting the socket down ends the blocked read at once)."""
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            self._client.close()
