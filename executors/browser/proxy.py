"""The egress proxy every byte the browser sends goes through (HTTP forward and CONNECT).

Chromium is started with `--proxy-server` pointing here and `--proxy-bypass-list=<-loopback>`,
and each job's browser context gets a route of its own (a listening port), so even loopback
traffic comes through and every refusal is known to the job that caused it. For each request
the proxy resolves the name itself, checks the address with the URL policy and connects to that
very address: a name that resolves to something else a moment later (DNS rebinding) changes
nothing. A refused plain-HTTP request gets its connection closed without an answer and a refused
CONNECT a 403, so the browser reports a network error and no refusal page passes as content.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import NamedTuple

import structlog

from executors.browser.errors import UrlNotAllowed
from executors.browser.policy import IPAddress, UrlPolicy, destination

log = structlog.get_logger("chaser.browser.proxy")

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
MAX_CONNECTIONS_PER_ROUTE = 256
MAX_NOTES = 200
CHUNK = 64 * 1024
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"te",
        b"trailer",
        b"upgrade",
    }
)
Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


class RequestHead(NamedTuple):
    """The head of one proxied request."""

    method: str
    target: str
    version: str
    headers: list[tuple[bytes, bytes]]


class Note(NamedTuple):
    """A request the proxy refused (`refused`) or could not connect (`failed`)."""

    kind: str
    host: str
    port: int
    target: str
    reason: str


class BadRequest(Exception):
    """A request head the proxy cannot parse."""


def parse_head(data: bytes) -> RequestHead:
    """Parse a request head (request line and headers, up to the blank line). Pure."""
    lines = data.split(b"\r\n")
    try:
        method, target, version = lines[0].decode("latin-1").split(" ")
    except ValueError as exc:
        raise BadRequest(f"bad request line {lines[0][:100]!r}") from exc
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise BadRequest(f"bad header line {line[:100]!r}")
        headers.append((name.strip(), value.strip()))
    return RequestHead(method.upper(), target, version, headers)


def connect_target(target: str) -> tuple[str, int]:
    """Host and port of a CONNECT target (`host:443`, `[::1]:443`). Pure."""
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or not host or not 0 < int(port) < 65536:
        raise BadRequest(f"bad CONNECT target {target[:200]!r}")
    return host.strip("[]").lower(), int(port)


def origin_request(head: RequestHead) -> bytes:
    """The request as sent to the origin: origin-form target, no hop-by-hop headers. Pure."""
    dest = destination(head.target)
    rest = head.target.split("://", 1)[1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    path = path.split("#", 1)[0] or "/"
    lines = [f"{head.method} {path} {head.version}".encode("latin-1")]
    lines += [name + b": " + value for name, value in head.headers if _forwarded(name)]
    if not any(name.lower() == b"host" for name, _ in head.headers):
        lines.append(b"Host: " + dest.host.encode("idna"))
    lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def closing_response_head(data: bytes) -> bytes:
    """A response head with its connection headers replaced by `Connection: close`. Pure."""
    lines = data.split(b"\r\n")
    kept = [lines[0]] + [
        line for line in lines[1:] if line and _forwarded(line.partition(b":")[0].strip())
    ]
    return b"\r\n".join([*kept, b"Connection: close", b"Proxy-Connection: close"]) + b"\r\n\r\n"


def _forwarded(name: bytes) -> bool:
    return name.lower() not in HOP_BY_HOP


async def system_resolver(host: str, port: int) -> Sequence[IPAddress]:
    """Resolve a host name with the system resolver (literal addresses pass straight through)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    seen: dict[IPAddress, None] = {}
    for info in infos:
        seen[ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])] = None
    return list(seen)


class Route:
    """One listening port of the proxy, serving one browser context; keeps its notes."""

    def __init__(self, proxy: EgressProxy, name: str, *, deny: str | None = None) -> None:
        self.proxy = proxy
        self.name = name
        self.deny = deny
        self.notes: list[Note] = []
        self.count = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def open(self) -> Route:
        """Start listening on a loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, limit=MAX_HEAD_BYTES)
        self.port = self._server.sockets[0].getsockname()[1]
        self.proxy.reserved_ports.add(self.port)
        return self

    @property
    def url(self) -> str:
        """The proxy URL the browser context is given."""
        return f"http://127.0.0.1:{self.port}"

    def note(self, kind: str, host: str, port: int, target: str, reason: str) -> None:
        """Record a refusal or a connection failure."""
        self.count += 1
        if len(self.notes) < MAX_NOTES:
            self.notes.append(Note(kind, host, port, target, reason))
        emit = log.debug if self.deny else log.info
        emit("browser_request_" + kind, route=self.name, target=target[:300], reason=reason)

    def mark(self) -> int:
        """A position in the notes, to ask later what happened after it."""
        return len(self.notes)

    def since(self, mark: int, kind: str | None = None) -> list[Note]:
        """Notes recorded after `mark` (of one kind)."""
        return [n for n in self.notes[mark:] if kind is None or n.kind == kind]

    def refusal_for(self, host: str, port: int) -> Note | None:
        """The latest refusal of a request to this host and port."""
        host = host.strip("[]").lower()
        for note in reversed(self.notes):
            if note.kind == "refused" and note.host == host and note.port == port:
                return note
        return None

    async def close(self) -> None:
        """Stop listening and cut every open connection."""
        if self._server is not None:
            self._server.close()
            self.proxy.reserved_ports.discard(self.port)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._writers) >= MAX_CONNECTIONS_PER_ROUTE:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            head = parse_head(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT))
            if head.method == "CONNECT":
                await self._tunnel(head, reader, writer)
            else:
                await self._forward(head, reader, writer)
        except (BadRequest, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            log.debug("proxy_bad_request", route=self.name, error=str(exc)[:200])
        except (ConnectionError, TimeoutError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            self._writers = {w for w in self._writers if not w.transport.is_closing()}

    async def _upstream(
        self, host: str, port: int, target: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """Resolve, check and connect; None (noted) when refused or unreachable."""
        if self.deny is not None:
            self.note("refused", host, port, target, self.deny)
            return None
        try:
            addresses = await self.proxy.resolve(host, port)
            ip = self.proxy.policy.pick(host, addresses)
            self.proxy.check_reserved(ip, port)
        except UrlNotAllowed as exc:
            self.note("refused", host, port, target, str(exc))
            return None
        except OSError as exc:
            self.note("failed", host, port, target, f"{host} did not resolve ({exc})")
            return None
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(str(ip), port), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            self.note("failed", host, port, target, f"cannot connect to {ip} port {port}: {exc}")
            return None
        self._writers.add(up_writer)
        return up_reader, up_writer

    async def _tunnel(
        self, head: RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        host, port = connect_target(head.target)
        upstream = await self._upstream(host, port, f"https://{head.target}")
        if upstream is None:
            writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        await _splice(reader, writer, *upstream)

    async def _forward(
        self, head: RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            dest = destination(head.target)
        except UrlNotAllowed as exc:
            self.note("refused", "", 0, head.target, str(exc))
            return
        if dest.scheme != "http":
            self.note("refused", dest.host, dest.port, head.target, "only http is forwarded")
            return
        upstream = await self._upstream(dest.host, dest.port, head.target)
        if upstream is None:
            return  # closing without an answer makes the browser report a network error
        upstream[1].write(origin_request(head))
        await _splice(reader, writer, *upstream, rewrite_head=True)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(CHUNK):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(OSError, RuntimeError):
        if dst.can_write_eof():
            dst.write_eof()


async def _splice(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    up_reader: asyncio.StreamReader,
    up_writer: asyncio.StreamWriter,
    *,
    rewrite_head: bool = False,
) -> None:
    """Copy both ways until the origin is done (its answer is what matters), then close.

    With `rewrite_head`, the origin's response head is passed on with `Connection: close`, so
    the browser never reuses a connection the proxy is about to close.
    """
    upward = asyncio.create_task(_pipe(reader, up_writer))
    try:
        if rewrite_head:
            response = await asyncio.wait_for(up_reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
            writer.write(closing_response_head(response))
        await _pipe(up_reader, writer)
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
        pass
    finally:
        upward.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await upward
        up_writer.transport.abort()


class EgressProxy:
    """Hands out routes (one per browser context) that all apply one URL policy."""

    def __init__(self, policy: UrlPolicy, resolver: Resolver = system_resolver) -> None:
        self.policy = policy
        self.resolve = resolver
        # Loopback ports of the engine's own machinery (DevTools, the proxy's routes): never
        # reachable from a page, whatever the allow-list says.
        self.reserved_ports: set[int] = set()
        self._routes = 0

    def check_reserved(self, ip: IPAddress, port: int) -> None:
        """Refuse the browsers' DevTools ports and the proxy itself, even when allowed."""
        if ip.is_loopback and port in self.reserved_ports:
            raise UrlNotAllowed(f"{ip} port {port} belongs to the browser engine itself")

    async def route(self, name: str = "", *, deny: str | None = None) -> Route:
        """A new route on its own port; with `deny`, one that refuses everything."""
        self._routes += 1
        return await Route(self, name or f"route-{self._routes}", deny=deny).open()
