"""Server-Sent Events on the client side: parsing the `text/event-stream` format."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple


class SseMessage(NamedTuple):
    """One dispatched SSE message (`id` is the last id seen, as the spec carries it over)."""

    id: str | None
    event: str
    data: str


def parse_sse(lines: Iterable[str]) -> Iterator[SseMessage]:
    """Messages of an event stream given line by line (comments and `retry` are skipped)."""
    last_id: str | None = None
    event = ""
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield SseMessage(last_id, event or "message", "\n".join(data))
            event, data = "", []
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            data.append(value)
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
