"""A minimal NATS protocol reader for bulk reads of a stream through a push consumer.

nats-py turns every message into an object, a header parse and two queue hops (~15 µs each);
folding the log from zero needs more than 100,000 events a second, so bulk reads parse the
wire here, a socket buffer at a time. Only what a push consumer needs is spoken: CONNECT,
SUB, flow-control replies, PING/PONG. TLS is upgraded to when the server asks; anything
fancier (credentials files, nkeys) makes `open_wire` raise WireUnsupported and the caller
falls back to nats-py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

READ_CHUNK = 1 << 20
CRLF = b"\r\n"
FLOW_CONTROL = b"FlowControl"
STALLED = b"Nats-Consumer-Stalled"
ACK_PREFIX = b"$JS.ACK."


class WireError(Exception):
    """The bulk-read connection failed or the server refused it."""


class WireUnsupported(WireError):
    """This connection needs options the minimal reader does not speak."""


@dataclass(frozen=True)
class Endpoint:
    """Where and how to connect: host, port and plain credentials."""

    host: str
    port: int
    user: str | None = None
    password: str | None = None
    token: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, url: str, *, token: str | None = None) -> Endpoint:
        """From `nats://[user:pass@]host:port` (or `tls://`)."""
        parsed = urlparse(url if "://" in url else f"nats://{url}")
        user = unquote(parsed.username) if parsed.username else None
        password = unquote(parsed.password) if parsed.password else None
        if user is not None and password is None:
            token, user = user, None
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 4222,
            user=user,
            password=password,
            token=token,
            tls=parsed.scheme == "tls",
        )


# (stream sequence, messages still pending after it, subject, data) of one delivered message.
Delivery = tuple[int, int, str, bytes]


def stream_seq(reply: bytes) -> tuple[int, int]:
    """The stream sequence and pending count in a `$JS.ACK...` reply subject (v1 and v2)."""
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    if reply.count(b".") == 8:
        _, seq, _, _, pending = reply.rsplit(b".", 4)
        return int(seq), int(pending)
    # $JS.ACK.<domain>.<account hash>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>.…
    tokens = reply.split(b".")
    return int(tokens[7]), int(tokens[10])


def _message(parts: list[bytes], block: bytes, out: list[Delivery], replies: list[bytes]) -> None:
    """One MSG/HMSG: a stream message (reply `$JS.ACK...`), or flow control to answer."""
    hmsg = parts[0] == b"HMSG"
    header_len = int(parts[-2]) if hmsg else 0
    reply = parts[3] if len(parts) == (6 if hmsg else 5) else b""
    if reply.startswith(ACK_PREFIX):
        seq, pending = stream_seq(reply)
        out.append((seq, pending, parts[1].decode(), block[header_len:]))
        return
    headers = block[:header_len]
    if reply and FLOW_CONTROL in headers:
        replies.append(reply)
    elif STALLED in headers:
        # A heartbeat naming a flow-control reply we missed: answer it or delivery stalls.
        start = headers.index(STALLED) + len(STALLED)
        replies.append(headers[start : headers.index(CRLF, start)].strip(b": "))


class Wire:
    """One raw connection: subscribe an inbox and read its messages in batches."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._buf = b""
        self._pos = 0

    async def subscribe(self, subject: str, timeout: float = 5.0) -> None:
        """SUB with sid 1 (one subscription per connection), confirmed by a PONG."""
        self._writer.write(f"SUB {subject} 1\r\nPING\r\n".encode())
        await self._writer.drain()
        await _pong(self._reader, timeout)

    async def batch(self) -> list[Delivery]:
        """The data messages in the next chunk read from the socket (may be empty)."""
        chunk = await self._reader.read(READ_CHUNK)
        if not chunk:
            raise WireError("the server closed the connection")
        self._buf = self._buf[self._pos :] + chunk if self._pos < len(self._buf) else chunk
        self._pos = 0
        out: list[Delivery] = []
        replies: list[bytes] = []
        self._parse(out, replies)
        if replies:
            for reply in replies:
                self._writer.write(b"PUB " + reply + b" 0\r\n\r\n")
            await self._writer.drain()
        return out

    def _parse(self, out: list[Delivery], replies: list[bytes]) -> None:
        buf = self._buf
        pos = self._pos
        size = len(buf)
        find = buf.find
        while True:
            end = find(CRLF, pos)
            if end < 0:
                break
            if not buf.startswith((b"HMSG", b"MSG"), pos):
                self._control(buf[pos:end])
                pos = end + 2
                continue
            parts = buf[pos:end].split(b" ")
            body = end + 2
            stop = body + int(parts[-1])
            if stop + 2 > size:
                break  # the rest of this message is in the next chunk
            if len(parts) == 6 and parts[3].startswith(ACK_PREFIX):
                # The common case, inline: a stored message with headers.
                seq, pending = stream_seq(parts[3])
                out.append((seq, pending, parts[1].decode(), buf[body + int(parts[4]) : stop]))
            else:
                _message(parts, buf[body:stop], out, replies)
            pos = stop + 2
        self._pos = pos

    def _control(self, line: bytes) -> None:
        if line == b"PING":
            self._writer.write(b"PONG\r\n")
        elif line.startswith(b"-ERR"):
            raise WireError(line.decode(errors="replace"))

    async def close(self) -> None:
        """Close the socket."""
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


async def open_wire(endpoint: Endpoint, *, timeout: float = 5.0) -> Wire:
    """Connect, read INFO, send CONNECT, and wait for the PONG that proves it was accepted."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(endpoint.host, endpoint.port, limit=READ_CHUNK * 4), timeout
        )
    except (OSError, TimeoutError) as exc:
        raise WireError(f"cannot reach {endpoint.host}:{endpoint.port}: {exc!r}") from exc
    try:
        info = await _info(reader, timeout)
        if info.get("nonce") and not (endpoint.user or endpoint.token):
            raise WireUnsupported("the server asks for a signed nonce (nkeys or credentials)")
        if endpoint.tls or info.get("tls_required"):
            await writer.start_tls(ssl.create_default_context(), server_hostname=endpoint.host)
        writer.write(_connect(endpoint) + b"PING\r\n")
        await writer.drain()
        await _pong(reader, timeout)
    except BaseException:
        writer.close()
        raise
    return Wire(reader, writer)


async def _info(reader: asyncio.StreamReader, timeout: float) -> dict[str, object]:
    line = await asyncio.wait_for(reader.readline(), timeout)
    if not line.startswith(b"INFO "):
        raise WireError(f"not a NATS server: {line[:40]!r}")
    info: dict[str, object] = json.loads(line[5:])
    return info


def _connect(endpoint: Endpoint) -> bytes:
    options: dict[str, object] = {
        "verbose": False,
        "pedantic": False,
        "headers": True,
        "no_responders": True,
        "protocol": 1,
        "name": "chaser-bulk-read",
        "lang": "python-wire",
        "version": "0.1",
    }
    if endpoint.user is not None:
        options["user"], options["pass"] = endpoint.user, endpoint.password
    if endpoint.token is not None:
        options["auth_token"] = endpoint.token
    return b"CONNECT " + json.dumps(options).encode() + CRLF


async def _pong(reader: asyncio.StreamReader, timeout: float) -> None:
    while True:
        line = await asyncio.wait_for(reader.readline(), timeout)
        if not line:
            raise WireError("the server closed the connection")
        if line.startswith(b"-ERR"):
            raise WireError(line.decode(errors="replace").strip())
        if line.startswith(b"PONG"):
            return
