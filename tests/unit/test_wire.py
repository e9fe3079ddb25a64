"""The bulk-read protocol parser: messages split anywhere across reads come out whole, flow
control is answered, and both ack-subject formats give the stream sequence."""

from __future__ import annotations

import asyncio

import pytest

from engine.wire import Endpoint, Wire, stream_seq

HEADERS = b"NATS/1.0\r\nNats-Msg-Id: abc\r\n\r\n"


def _hmsg(seq: int, pending: int, payload: bytes) -> bytes:
    subject = f"chaser.0.acme.job.job_{seq}.JobStarted".encode()
    reply = f"$JS.ACK.CHASER_EVENTS_0.c1.1.{seq}.{seq}.1700000000000000000.{pending}".encode()
    block = HEADERS + payload
    head = b"HMSG %s 1 %s %d %d\r\n" % (subject, reply, len(HEADERS), len(block))
    return head + block + b"\r\n"


def _msg(seq: int, payload: bytes) -> bytes:
    reply = f"$JS.ACK.S.c.1.{seq}.{seq}.0.0".encode()
    return b"MSG chaser.0.acme.x 1 %s %d\r\n%s\r\n" % (reply, len(payload), payload)


def _control(reply: bytes, headers: bytes) -> bytes:
    """A status message (flow control request, heartbeat): headers only, no payload."""
    head = b"HMSG _INBOX.x 1 " + (reply + b" " if reply else b"")
    return head + b"%d %d\r\n" % (len(headers), len(headers)) + headers + b"\r\n"


FLOW = _control(b"$JS.FC.S.c.1", b"NATS/1.0 100 FlowControl Request\r\n\r\n")
BEAT = _control(b"", b"NATS/1.0 100 Idle Heartbeat\r\nNats-Consumer-Stalled: $JS.FC.S.c.2\r\n\r\n")


class _Writer:
    def __init__(self) -> None:
        self.sent = b""

    def write(self, data: bytes) -> None:
        self.sent += data

    async def drain(self) -> None:
        return None


def _wire(chunks: list[bytes]) -> tuple[Wire, _Writer]:
    reader = asyncio.StreamReader()
    for chunk in chunks:
        reader.feed_data(chunk)
    reader.feed_eof()
    writer = _Writer()
    return Wire(reader, writer), writer  # type: ignore[arg-type]


async def _read_all(wire: Wire, count: int) -> list[tuple[int, int, str, bytes]]:
    out: list[tuple[int, int, str, bytes]] = []
    while len(out) < count:
        out.extend(await wire.batch())
    return out


STREAM = (
    _hmsg(1, 3, b'{"a":1}')
    + b"PING\r\n"
    + FLOW
    + _hmsg(2, 2, b'{"b":"with \\r\\n inside"}')
    + BEAT
    + _msg(3, b'{"c":3}')
    + _hmsg(4, 0, b"x" * 5000)
)


@pytest.mark.parametrize("size", [1, 7, 64, 1000, len(STREAM)])
async def test_messages_split_anywhere_come_out_whole(size: int) -> None:
    # Every read returns at most `size` bytes: the parser must stitch messages back together.
    wire, writer = _wire([STREAM[i : i + size] for i in range(0, len(STREAM), size)])
    got = await _read_all(wire, 4)
    assert [(seq, pending) for seq, pending, _, _ in got] == [(1, 3), (2, 2), (3, 0), (4, 0)]
    assert got[0][2] == "chaser.0.acme.job.job_1.JobStarted"
    assert got[1][3] == b'{"b":"with \\r\\n inside"}'
    assert got[3][3] == b"x" * 5000
    assert b"PONG\r\n" in writer.sent
    assert b"PUB $JS.FC.S.c.1 0\r\n\r\n" in writer.sent  # flow control answered
    assert b"PUB $JS.FC.S.c.2 0\r\n\r\n" in writer.sent  # and the stalled one a heartbeat names


def test_both_ack_subject_formats_give_the_sequence() -> None:
    assert stream_seq(b"$JS.ACK.S.c.1.42.7.1700000000.9") == (42, 9)
    assert stream_seq(b"$JS.ACK.hub.ACCHASH.S.c.1.42.7.1700000000.9.token") == (42, 9)


def test_endpoints_come_from_urls() -> None:
    assert Endpoint.parse("nats://u:p%40ss@h:4223") == Endpoint("h", 4223, "u", "p@ss")
    assert Endpoint.parse("nats://s3cret@h") == Endpoint("h", 4222, token="s3cret")
    assert Endpoint.parse("tls://h:1").tls
