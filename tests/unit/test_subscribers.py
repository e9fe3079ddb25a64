"""What subscribers get: the event JSON with `seq`, filters, SSE frames and their parsing,
the webhook resolver's address check, and the purity of the rules modules."""

from __future__ import annotations

import json
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from api.events import feed_filter, sse_frame
from cli.sse import SseMessage, parse_sse
from engine.errors import InvalidInput
from engine.store import recorded_from
from engine.subscribers import AGGREGATE_OF_TYPE, EVENT_TYPES, EventFilter, subscriber_json
from executors.browser.errors import UrlNotAllowed
from executors.webhooks import _CheckedResolver, address_policy
from schemas.events import JobCreated, JobStarted, encode_event
from schemas.sessions import SessionOpened
from tests.unit.test_imports import FORBIDDEN, imported_modules

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ENV: dict[str, Any] = {"event_id": "e1", "account": "acme", "at": T0, "actor": "t"}


def test_the_subscriber_json_is_the_stored_json_plus_seq() -> None:
    data = encode_event(JobStarted(**ENV, job_id="j1", executor_id="x"))
    body = json.loads(subscriber_json(data, 42))
    assert body == {**json.loads(data), "seq": 42}
    assert subscriber_json(data + b"\n", 1).endswith(b',"seq":1}')


def test_event_types_cover_every_aggregate() -> None:
    assert {"JobFailed", "SessionOpened", "WorkspaceDeleted"} <= EVENT_TYPES
    assert AGGREGATE_OF_TYPE["StepFinished"] == "job"
    assert AGGREGATE_OF_TYPE["SessionExpired"] == "session"
    assert AGGREGATE_OF_TYPE["WorkspaceCreated"] == "workspace"


def test_filters() -> None:
    created = JobCreated(**ENV, job_id="j1", kind="system.echo", input={})
    started = JobStarted(**ENV, job_id="j1", executor_id="x")
    session = SessionOpened(**ENV, session_id="s1", session_type="browser")
    kinds = {"j1": "system.echo"}.get

    def kind_of(event: Any) -> str | None:
        return kinds(getattr(event, "job_id", ""))

    assert EventFilter().matches(session, kind_of)
    assert EventFilter(types=frozenset({"JobStarted"})).matches(started, kind_of)
    assert not EventFilter(types=frozenset({"JobStarted"})).matches(created, kind_of)
    assert EventFilter(job_id="j1").matches(started, kind_of)
    assert not EventFilter(job_id="j1").matches(session, kind_of)
    assert EventFilter(kinds=frozenset({"system.echo"})).matches(started, kind_of)
    assert not EventFilter(kinds=frozenset({"system.echo"})).matches(session, kind_of)
    assert EventFilter(job_id="j1").subject(2, "acme") == "chaser.2.acme.job.j1.*"
    assert EventFilter().subject(2, "acme") == "chaser.2.acme.>"


def test_query_strings_become_filters() -> None:
    flt = feed_filter({"type": ["JobFailed,JobSucceeded"], "kind": ["a", "b"], "job_id": ["j"]})
    assert flt.types == {"JobFailed", "JobSucceeded"} and flt.kinds == {"a", "b"}
    with pytest.raises(InvalidInput, match="unknown event type"):
        feed_filter({"type": ["JobExploded"]})
    with pytest.raises(InvalidInput):
        feed_filter({"job_id": ["a,b"]})


def test_sse_frames_parse_back() -> None:
    rec = recorded_from(0, 7, encode_event(JobStarted(**ENV, job_id="j1", executor_id="x")))
    frame = sse_frame(rec).decode()
    assert frame.startswith("id: 7\nevent: JobStarted\ndata: {")
    lines = [": comment", "retry: 1000", "", *frame.split("\n")]
    (message,) = list(parse_sse(lines))
    assert message.id == "7" and message.event == "JobStarted"
    assert json.loads(message.data)["seq"] == 7


def test_sse_multi_line_data_and_id_carry_over() -> None:
    lines = ["id: 1", "data: a", "data: b", "", "data: c", ""]
    assert list(parse_sse(lines)) == [
        SseMessage("1", "message", "a\nb"),
        SseMessage("1", "message", "c"),
    ]


class _Fixed:
    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(self, host: str, port: int = 0, family: Any = socket.AF_INET) -> Any:
        return [
            {"hostname": host, "host": a, "port": port, "family": family, "proto": 0, "flags": 0}
            for a in self.addresses
        ]

    async def close(self) -> None:
        return None


async def test_the_resolver_hands_out_only_allowed_addresses() -> None:
    resolver = _CheckedResolver(address_policy(["127.0.0.1"]))
    resolver._inner = _Fixed("10.0.0.5", "127.0.0.1")  # type: ignore[assignment]
    assert [r["host"] for r in await resolver.resolve("hooks.example", 80)] == ["127.0.0.1"]
    resolver._inner = _Fixed("169.254.169.254", "10.0.0.5")  # type: ignore[assignment]
    with pytest.raises(UrlNotAllowed, match=r"169\.254\.169\.254"):
        await resolver.resolve("rebound.example", 80)
    public = _CheckedResolver(address_policy([]))
    public._inner = _Fixed("93.184.216.34")  # type: ignore[assignment]
    assert [r["host"] for r in await public.resolve("example.com", 443)] == ["93.184.216.34"]


PURE = ["engine/subscribers.py", "engine/webhook_rules.py", "engine/audit.py"]


@pytest.mark.parametrize("name", PURE)
def test_the_rules_modules_do_no_io(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    imports = imported_modules((root / name).read_text())
    assert not sorted(i for i in imports if i.split(".")[0] in FORBIDDEN)
    project = {i for i in imports if i.split(".")[0] in {"engine", "api", "cli", "executors"}}
    # engine.store and engine.sessions are the pure parts they build on (digest, folds).
    allowed = {"engine.errors", "engine.fold", "engine.sessions", "engine.store", "engine.subjects"}
    assert project <= allowed
