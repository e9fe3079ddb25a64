"""`wait_for_terminal` follows the job's event stream, and polls a server without one."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cli.client import ApiClient, ApiError, wait_for_terminal

RUNNING = {"id": "job_1", "status": "running"}
DONE = {"id": "job_1", "status": "succeeded"}
STREAM = b"retry: 1000\n\nid: 3\nevent: JobSucceeded\ndata: {}\n\n"


def _client(handler: Any) -> ApiClient:
    return ApiClient("http://api", "chk_x_y", transport=httpx.MockTransport(handler))


def test_it_follows_the_job_stream_until_it_ends() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if request.url.path.endswith("/events"):
            return httpx.Response(
                200, content=STREAM, headers={"content-type": "text/event-stream"}
            )
        return httpx.Response(200, json=DONE)

    assert wait_for_terminal(_client(handler), "job_1", timeout=5) == DONE
    assert calls == ["/v1/jobs/job_1/events", "/v1/jobs/job_1"]


def test_a_stream_that_ends_early_is_resumed_after_its_last_id() -> None:
    seen: list[str | None] = []
    answers = iter([RUNNING, DONE])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            seen.append(request.url.params.get("after"))
            return httpx.Response(200, content=STREAM)
        return httpx.Response(200, json=next(answers))

    assert wait_for_terminal(_client(handler), "job_1", timeout=5) == DONE
    assert seen == [None, "3"]


def test_without_the_stream_it_polls() -> None:
    answers = iter([RUNNING, RUNNING, DONE])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            return httpx.Response(404, json={"status": 404, "title": "Not found", "detail": "x"})
        return httpx.Response(200, json=next(answers))

    assert wait_for_terminal(_client(handler), "job_1", timeout=5) == DONE


def test_a_missing_job_is_still_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"status": 404, "title": "Not found", "detail": "no job"})

    with pytest.raises(ApiError, match="404"):
        wait_for_terminal(_client(handler), "job_1", timeout=5)
