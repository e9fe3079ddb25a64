"""The auditor's pure checks: hash chains, gaps, decoding, subjects, legal paths, replays,
exports and the read-model comparison."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from engine.audit import Auditor, as_of, audit, compare_read_model, export_line, read_export
from engine.store import digest_of
from schemas.audit import StoredMessage
from schemas.common import JobError, StepStatus
from schemas.events import (
    AnyJobEvent,
    JobCreated,
    JobFailed,
    JobStarted,
    JobSucceeded,
    StepFinished,
    encode_event,
)

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ACCOUNT = "acme"


def _history(job_id: str, *, fail: bool = False) -> list[AnyJobEvent]:
    env: dict[str, Any] = {"account": ACCOUNT, "actor": "test", "job_id": job_id}
    end: AnyJobEvent = (
        JobFailed(event_id="", at=T0, error=JobError(code="boom", message="it broke"), **env)
        if fail
        else JobSucceeded(event_id="", at=T0, result={"ok": True}, **env)
    )
    return [
        JobCreated(event_id="", at=T0, kind="system.echo", input={}, **env),
        JobStarted(event_id="", at=T0, executor_id="x", **env),
        StepFinished(event_id="", at=T0, index=0, name="s", status=StepStatus.SUCCEEDED, **env),
        end,
    ]


def _log(*histories: list[AnyJobEvent], start: int = 1) -> list[StoredMessage]:
    """Interleave histories into stored messages with chained prev_hashes, as appends do."""
    out: list[StoredMessage] = []
    last: dict[str, str] = {}
    seq = start
    for round_ in range(max(len(h) for h in histories)):
        for history in histories:
            if round_ >= len(history):
                continue
            event = history[round_]
            event = msgspec.structs.replace(
                event,
                event_id=f"{event.job_id}-{round_}",
                at=T0 + timedelta(seconds=seq),
                prev_hash=last.get(event.job_id, ""),
            )
            data = encode_event(event)
            last[event.job_id] = digest_of(data)
            subject = f"chaser.0.{ACCOUNT}.job.{event.job_id}.{type(event).__name__}"
            out.append(StoredMessage(0, seq, subject, data))
            seq += 1
    return out


def _checks(result: Any) -> set[tuple[str, str | None, int | None]]:
    return {(f.check, f.id, f.seq) for f in result.findings}


def test_a_clean_log_verifies_and_folds() -> None:
    result = audit(ACCOUNT, _log(_history("a"), _history("b", fail=True)))
    assert result.findings == []
    assert {j: s.status for j, s in result.jobs.items()} == {"a": "succeeded", "b": "failed"}
    assert result.events == 8 and (result.first_seq, result.last_seq) == (1, 8)


def test_an_altered_event_breaks_the_chain_at_its_successor() -> None:
    log = _log(_history("a"))
    altered = json.loads(log[1].data)
    altered["executor_id"] = "someone-else"
    log[1] = StoredMessage(0, 2, log[1].subject, json.dumps(altered).encode())
    assert _checks(audit(ACCOUNT, log)) == {("chain", "a", 3)}


def test_a_removed_event_breaks_the_chain_and_the_gap_is_reported() -> None:
    log = _log(_history("a"))
    del log[1]  # the JobStarted: StepFinished now follows JobCreated
    auditor = Auditor(ACCOUNT)
    auditor.feed(log)
    auditor.gaps(0, [2])
    # Without its start, the job's later events are illegal too: each is named.
    assert _checks(auditor.result()) == {
        ("gap", None, 2),
        ("chain", "a", 3),
        ("transition", "a", 3),
        ("transition", "a", 4),
    }


def test_an_undecodable_message_is_named() -> None:
    log = _log(_history("a"))
    log.append(StoredMessage(0, 5, f"chaser.0.{ACCOUNT}.job.a.JobStarted", b"{not json"))
    finding = audit(ACCOUNT, log).findings[-1]
    assert (finding.check, finding.id, finding.seq, finding.aggregate) == ("decode", "a", 5, "job")


def test_an_event_under_the_wrong_subject_is_named() -> None:
    log = _log(_history("a"))
    log[0] = StoredMessage(0, 1, f"chaser.0.{ACCOUNT}.job.b.JobCreated", log[0].data)
    checks = _checks(audit(ACCOUNT, log))
    assert ("subject", "b", 1) in checks


def test_a_replayed_event_id_is_a_duplicate() -> None:
    log = _log(_history("a"))
    first = json.loads(log[0].data)
    copy = json.loads(log[3].data)
    copy["event_id"] = first["event_id"]
    log[3] = StoredMessage(0, 4, log[3].subject, json.dumps(copy).encode())
    assert ("duplicate", "a", 4) in _checks(audit(ACCOUNT, log))


def test_an_illegal_path_is_a_transition_finding() -> None:
    history = _history("a")
    log = _log([history[0], history[3]])  # succeeded without ever starting
    finding = audit(ACCOUNT, log).findings[0]
    assert (finding.check, finding.id, finding.event_type) == ("transition", "a", "JobSucceeded")
    assert finding.event_id == "a-1"


def test_histories_begun_before_retention_are_not_findings() -> None:
    log = _log(_history("a"), start=1)[2:]  # the first two were aged out
    result = audit(ACCOUNT, log, first_seq=3)
    assert result.findings == [] and result.truncated == ["job a"]
    assert audit(ACCOUNT, log, first_seq=1).findings[0].check == "chain"


def test_as_of_a_sequence_a_time_or_one_job() -> None:
    log = _log(_history("a"), _history("b"))
    assert [m.seq for m in as_of(log, until_seq=3)] == [1, 2, 3]
    assert {j: s.status for j, s in audit(ACCOUNT, as_of(log, until_seq=3)).jobs.items()} == {
        "a": "running",
        "b": "queued",
    }
    until = T0 + timedelta(seconds=4, milliseconds=500)
    assert [m.seq for m in as_of(log, until=until)] == [1, 2, 3, 4]
    assert {m.subject.split(".")[4] for m in as_of(log, job_id="b")} == {"b"}


def test_an_export_round_trips_the_exact_bytes() -> None:
    log = _log(_history("a"))
    log.append(StoredMessage(0, 5, f"chaser.0.{ACCOUNT}.job.a.X", b"not json\nat all"))
    lines = [export_line(m) for m in log]
    assert all(line.endswith(b"\n") and line.count(b"\n") == 1 for line in lines)
    assert list(read_export(lines)) == log
    with pytest.raises(ValueError, match="line 1"):
        list(read_export([b"{}"]))


def test_the_read_model_is_compared_field_by_field() -> None:
    result = audit(ACCOUNT, _log(_history("a"), _history("b")))
    live = [
        json.loads(msgspec.json.encode(_resource(result.jobs["a"]))),
        {**json.loads(msgspec.json.encode(_resource(result.jobs["b"]))), "status": "running"},
    ]
    upto = result.last_seq or 0
    findings = compare_read_model(result.jobs, live, upto=upto)
    assert [(f.id, f.detail) for f in findings] == [
        ("b", "read model differs from the log in ['status']")
    ]
    assert compare_read_model(result.jobs, live[:1], upto=upto)[0].detail.endswith("log only")
    ahead = [{**live[1], "seq": upto + 5}]
    assert compare_read_model({"b": result.jobs["b"]}, ahead, upto=upto) == []


def _resource(state: Any) -> Any:
    from schemas.api import JobResource

    return JobResource.of(state)
