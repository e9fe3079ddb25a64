"""Size limits on what the browser hands back, so events and messages stay bounded. Pure."""

from __future__ import annotations

from typing import Any

import msgspec

# A DevTools message larger than this closes that page's connection (the job fails with
# `result_too_large`); other jobs have their own connections and are not affected.
MAX_MESSAGE_BYTES = 32 * 1024 * 1024
# One action's result as recorded in its StepFinished event.
MAX_STEP_RESULT_BYTES = 16 * 1024
# Every action result together in the job's result.
MAX_JOB_RESULTS_BYTES = 64 * 1024
# What a scrape extracts (texts, HTML, attributes), counted in characters in the page, and
# the whole result's JSON in bytes (an event must stay under NATS's 1 MiB payload limit).
MAX_SCRAPE_CHARS = 512 * 1024
MAX_SCRAPE_RESULT_BYTES = 512 * 1024
MAX_MATCHES = 1000
# Refused subresource requests listed in a scrape's result.
MAX_BLOCKED_LISTED = 20

_encode = msgspec.json.Encoder().encode


def json_size(value: Any) -> int:
    """Bytes of a value's JSON encoding."""
    return len(_encode(value))


def bounded(value: Any, limit: int) -> Any:
    """The value itself when its JSON fits in `limit` bytes, else a truncated preview of it."""
    data = _encode(value)
    if len(data) <= limit:
        return value
    preview = data[: max(limit - 200, 0)].decode("utf-8", errors="ignore")
    return {"truncated": True, "bytes": len(data), "preview": preview}


def bounded_list(values: list[Any], item_limit: int, total_limit: int) -> list[Any]:
    """Each value bounded to `item_limit`; past `total_limit` in all, later ones elided."""
    out: list[Any] = []
    used = 0
    for value in values:
        item = bounded(value, item_limit)
        size = json_size(item)
        if used + size > total_limit:
            item = {"truncated": True, "bytes": size}
            size = json_size(item)
        used += size
        out.append(item)
    return out


def _longest_string(value: Any) -> tuple[Any, Any, int] | None:
    """The container, key and length of the longest string inside a JSON-like value."""
    best: tuple[Any, Any, int] | None = None
    stack = [value]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, item in items:
            if isinstance(item, str):
                if best is None or len(item) > best[2]:
                    best = (node, key, len(item))
            elif isinstance(item, dict | list):
                stack.append(item)
    return best


def fit(result: dict[str, Any], limit: int) -> dict[str, Any]:
    """Halve the longest strings of a result until its JSON fits in `limit` bytes (marking it
    `truncated`): characters can take up to six bytes each once encoded, so counting them in
    the page is not enough to keep an event under the NATS payload limit."""
    while json_size(result) > limit:
        longest = _longest_string(result)
        if longest is None or longest[2] == 0:
            break
        node, key, length = longest
        node[key] = node[key][: length // 2]
        result["truncated"] = True
    return result
