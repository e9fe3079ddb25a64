"""The Chrome DevTools Protocol over one WebSocket, written for this project.

Framing is JSON: a call is `{"id", "method", "params"[, "sessionId"]}`, its answer carries the
same `id` and a `result` or an `error`; anything without an `id` is an event (`method`,
`params`). `encode_call` and `decode_message` are the pure framing; `CdpConnection` is the shell
that numbers calls, matches answers and hands events to listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Callable
from typing import Any

import msgspec
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from executors.browser.errors import BrowserError, CdpClosed, CdpError, ResultTooLarge

log = structlog.get_logger("chaser.browser")

MESSAGE_TOO_BIG = 1009
Params = dict[str, Any]
Listener = Callable[[Params], None]


class ProtocolError(msgspec.Struct, frozen=True):
    """The `error` member of an answer."""

    code: int = 0
    message: str = ""
    data: Any = None


class Incoming(msgspec.Struct, frozen=True):
    """Any message from the browser: an answer (`id`) or an event (`method`)."""

    id: int | None = None
    result: Params | None = None
    error: ProtocolError | None = None
    method: str | None = None
    params: Params = {}
    sessionId: str | None = None  # the protocol's spelling


class _Call(msgspec.Struct, omit_defaults=True):
    id: int
    method: str
    params: Params = {}
    sessionId: str | None = None


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Incoming).decode


def encode_call(call_id: int, method: str, params: Params | None, session_id: str | None) -> bytes:
    """One call as the bytes of a text frame."""
    return _encode(_Call(id=call_id, method=method, params=params or {}, sessionId=session_id))


def decode_message(data: bytes | str) -> Incoming:
    """One message from the browser; raises msgspec.DecodeError on garbage."""
    return _decode(data)


class CdpConnection:
    """One DevTools WebSocket (the browser's or one page's)."""

    def __init__(self, ws: ClientConnection, *, name: str, lost: Callable[[], BrowserError]):
        self.name = name
        self._ws = ws
        self._lost = lost
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[str, asyncio.Future[Params]]] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._expected: set[asyncio.Future[Params]] = set()
        self._on_close: list[Callable[[BrowserError], None]] = []
        self.error: BrowserError | None = None
        self._reader = asyncio.create_task(self._read(), name=f"cdp-{name}")

    @classmethod
    async def open(
        cls, url: str, *, name: str, max_size: int, lost: Callable[[], BrowserError]
    ) -> CdpConnection:
        """Connect to a DevTools WebSocket URL."""
        try:
            ws = await connect(
                url, max_size=max_size, compression=None, ping_interval=None, open_timeout=10
            )
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise lost() from exc
        return cls(ws, name=name, lost=lost)

    @property
    def closed(self) -> bool:
        """Whether the connection is gone."""
        return self.error is not None

    async def call(
        self, method: str, params: Params | None = None, *, session: str | None = None
    ) -> Params:
        """Send one call and wait for its answer's `result`; CdpError for an `error` answer."""
        if self.error is not None:
            raise self.error
        call_id = next(self._ids)
        future: asyncio.Future[Params] = asyncio.get_running_loop().create_future()
        self._pending[call_id] = (method, future)
        try:
            await self._ws.send(encode_call(call_id, method, params, session), text=True)
            return await future
        except ConnectionClosed as exc:
            raise self._closed(exc) from exc
        finally:
            self._pending.pop(call_id, None)

    def on(self, method: str, listener: Listener) -> Callable[[], None]:
        """Call `listener(params)` for every `method` event; returns the unsubscribe function."""
        self._listeners.setdefault(method, []).append(listener)

        def off() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.get(method, []).remove(listener)

        return off

    def expect(
        self, method: str, predicate: Callable[[Params], bool] | None = None
    ) -> asyncio.Future[Params]:
        """A future of the params of the next `method` event (matching `predicate`).

        Register before the call that causes the event; cancel the future to stop listening.
        """
        future: asyncio.Future[Params] = asyncio.get_running_loop().create_future()
        if self.error is not None:
            future.set_exception(self.error)
            return future

        def listener(params: Params) -> None:
            if not future.done() and (predicate is None or predicate(params)):
                future.set_result(params)

        off = self.on(method, listener)
        self._expected.add(future)

        def done(_: asyncio.Future[Params]) -> None:
            off()
            self._expected.discard(future)

        future.add_done_callback(done)
        return future

    def on_close(self, callback: Callable[[BrowserError], None]) -> None:
        """Call `callback(error)` once when the connection goes away."""
        if self.error is not None:
            callback(self.error)
        else:
            self._on_close.append(callback)

    def fail(self, error: BrowserError) -> None:
        """Fail every pending call and wait with `error` (a crash seen by the caller)."""
        if self.error is None:
            self.error = error
        for _, future in list(self._pending.values()):
            if not future.done():
                future.set_exception(error)
        for future in list(self._expected):
            if not future.done():
                future.set_exception(error)
        callbacks, self._on_close = self._on_close, []
        for callback in callbacks:
            callback(error)

    async def close(self) -> None:
        """Close the WebSocket and stop reading."""
        if self.error is None:
            self.fail(CdpClosed(f"{self.name}: connection closed"))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 1.0)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader

    def _closed(self, exc: ConnectionClosed) -> BrowserError:
        if self.error is not None:
            return self.error
        codes = {c.code for c in (exc.sent, exc.rcvd) if c is not None}
        if MESSAGE_TOO_BIG in codes:
            return ResultTooLarge(f"a DevTools message of {self.name} was over the size limit")
        return self._lost()

    async def _read(self) -> None:
        try:
            while True:
                raw = await self._ws.recv(decode=False)
                self._dispatch(raw)
        except ConnectionClosed as exc:
            self.fail(self._closed(exc))
        except Exception as exc:  # a bug in a listener must not leave callers hanging
            log.exception("cdp_reader_failed", connection=self.name)
            self.fail(CdpClosed(f"{self.name}: {exc!r}"))

    def _dispatch(self, raw: bytes | str) -> None:
        try:
            message = decode_message(raw)
        except msgspec.DecodeError:
            log.warning("cdp_message_undecodable", connection=self.name, size=len(raw))
            return
        if message.id is not None:
            entry = self._pending.get(message.id)
            if entry is None or entry[1].done():
                return
            method, future = entry
            if message.error is not None:
                err = message.error
                future.set_exception(CdpError(method, err.code, err.message, err.data))
            else:
                future.set_result(message.result or {})
            return
        if message.method is not None:
            for listener in list(self._listeners.get(message.method, ())):
                listener(message.params)
