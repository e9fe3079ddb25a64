"""Schema evolution: stored events of every schema version still decode, verify and fold."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from engine.audit import audit
from schemas.audit import StoredMessage
from schemas.common import JobStatus
from schemas.events import SCHEMA_VERSION
from schemas.log import aggregate_of, decode_event
from schemas.sessions import SessionStatus

SAMPLES = sorted((Path(__file__).resolve().parents[1] / "samples").glob("events-v*.jsonl"))


def _version(path: Path) -> int:
    return int(path.stem.removeprefix("events-v"))


def _stored(path: Path) -> list[StoredMessage]:
    """The sample lines as the stream would hold them (subjects rebuilt from the events)."""
    out = []
    for seq, line in enumerate(path.read_bytes().splitlines(), 1):
        event = decode_event(line)
        aggregate, ident = aggregate_of(event)
        subject = f"chaser.0.{event.account}.{aggregate}.{ident}.{type(event).__name__}"
        out.append(StoredMessage(0, seq, subject, line))
    return out


def test_there_are_samples_of_every_version_up_to_the_current_one() -> None:
    assert [_version(p) for p in SAMPLES] == list(range(1, SCHEMA_VERSION + 1))


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_decode_verify_and_fold(path: Path) -> None:
    messages = _stored(path)
    assert {decode_event(m.data).schema_version for m in messages} == {_version(path)}
    result = audit("sample-org", messages)
    assert result.findings == []
    assert {j.id: j.status for j in result.jobs.values()} == {
        "job_sample_one": JobStatus.SUCCEEDED,
        "job_sample_two": JobStatus.CANCELLED,
    }
    one = result.jobs["job_sample_one"]
    assert (one.attempt, len(one.steps), one.result) == (2, 2, {"steps": 2})
    assert {s.id: s.status for s in result.sessions.values()} == {
        "ses_sample_one": SessionStatus.TERMINATED,
        "ses_sample_two": SessionStatus.FAILED,
        "ses_sample_three": SessionStatus.EXPIRED,
    }
    assert result.workspaces["my-project"].deleted_at is not None


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_every_event_type_of_the_log(path: Path) -> None:
    from engine.subscribers import EVENT_TYPES

    types = {type(decode_event(m.data)).__name__ for m in _stored(path)}
    assert types == EVENT_TYPES


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_samples_decode_when_a_newer_writer_added_fields(path: Path) -> None:
    for line in path.read_bytes().splitlines():
        newer = msgspec.json.decode(line)
        newer["a_field_from_the_future"] = {"nested": [1, 2]}
        event = decode_event(msgspec.json.encode(newer))
        assert event == decode_event(line)
