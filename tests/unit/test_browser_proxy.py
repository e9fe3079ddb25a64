"""The egress proxy: request parsing (pure) and its checks against a fake resolver."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

import pytest

from executors.browser.policy import IPAddress, UrlPolicy, parse_allow
from executors.browser.proxy import (
    BadRequest,
    EgressProxy,
    closing_response_head,
    connect_target,
    origin_request,
    parse_head,
)

HEAD = (
    b"GET http://example.com:8080/a/b?q=1 HTTP/1.1\r\n"
    b"Host: example.com:8080\r\nProxy-Connection: keep-alive\r\n"
    b"Connection: keep-alive\r\nAccept: */*\r\n\r\n"
)


def test_parse_and_rewrite_a_forward_request() -> None:
    head = parse_head(HEAD)
    assert (head.method, head.target, head.version) == (
        "GET",
        "http://example.com:8080/a/b?q=1",
        "HTTP/1.1",
    )
    rewritten = origin_request(head)
    assert rewritten.startswith(b"GET /a/b?q=1 HTTP/1.1\r\n")
    assert b"Host: example.com:8080\r\n" in rewritten and b"Accept: */*\r\n" in rewritten
    assert b"Proxy-Connection" not in rewritten and b"keep-alive" not in rewritten
    assert rewritten.endswith(b"Connection: close\r\n\r\n")


def test_response_heads_are_made_to_close() -> None:
    head = (
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nContent-Length: 3\r\n\r\n"
    )
    assert closing_response_head(head) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n"
        b"Proxy-Connection: close\r\n\r\n"
    )


def test_connect_targets() -> None:
    assert connect_target("Example.com:443") == ("example.com", 443)
    assert connect_target("[::1]:8443") == ("::1", 8443)
    for bad in ("example.com", "example.com:0", ":443", "h:x"):
        with pytest.raises(BadRequest):
            connect_target(bad)
    with pytest.raises(BadRequest):
        parse_head(b"garbage\r\n\r\n")


class FakeDns:
    """Answers from a table, counting the questions."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> Sequence[IPAddress]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError("Name or service not known")
        return [ipaddress.ip_address(a) for a in self.table[host]]


async def _origin() -> tuple[asyncio.Server, int, list[bytes]]:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], seen


async def _ask(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    data = await reader.read()
    writer.close()
    return data


async def test_the_checked_address_is_the_one_connected_to() -> None:
    origin, origin_port, seen = await _origin()
    # A rebinding name: the first answer is the allowed address, every later one a private one.
    dns = FakeDns({"rebind.test": ["127.0.0.1"]})
    proxy = EgressProxy(UrlPolicy(parse_allow(["127.0.0.1/32"])), resolver=dns)
    route = await proxy.route()
    try:
        request = f"GET http://rebind.test:{origin_port}/x HTTP/1.1\r\nHost: rebind.test\r\n\r\n"
        dns.table["rebind.test"] = ["127.0.0.1"]
        answer = await _ask(route.port, request.encode())
        dns.table["rebind.test"] = ["10.0.0.1"]
        assert answer.endswith(b"ok") and b"Connection: close" in answer
        assert dns.asked == ["rebind.test"]  # resolved once, by the proxy, then connected to
        assert seen and seen[0].startswith(b"GET /x HTTP/1.1")
        assert route.notes == []
    finally:
        await route.close()
        origin.close()


async def test_refusals_are_noted_and_answered_without_content() -> None:
    dns = FakeDns({"inside.test": ["10.1.1.1"], "meta.test": ["169.254.169.254"]})
    route = await EgressProxy(UrlPolicy(), resolver=dns).route()
    try:
        plain = await _ask(route.port, b"GET http://inside.test/ HTTP/1.1\r\n\r\n")
        assert plain == b""  # closed without an answer: the browser sees a network error
        tunnel = await _ask(route.port, b"CONNECT meta.test:443 HTTP/1.1\r\n\r\n")
        assert tunnel.startswith(b"HTTP/1.1 403")
        missing = await _ask(route.port, b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n")
        assert missing.startswith(b"HTTP/1.1 403")
        kinds = [(n.kind, n.host, n.reason) for n in route.notes]
        assert kinds[0] == (
            "refused",
            "inside.test",
            "inside.test resolves to 10.1.1.1, a private address",
        )
        assert kinds[1][:2] == ("refused", "meta.test") and "metadata" in kinds[1][2]
        assert kinds[2][0] == "failed" and "did not resolve" in kinds[2][2]
        refusal = route.refusal_for("inside.test", 80)
        assert refusal is not None
        assert route.refusal_for("meta.test", 443) is not None
        assert route.since(1, "refused")[0].host == "meta.test"
    finally:
        await route.close()
