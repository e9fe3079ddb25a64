"""The auditor's checks of an account's log, and replays of it as of any point. Pure: the shell
reads the stored messages (from JetStream or from an export file) and hands them in.

Checked for every stored message, in stream order: it decodes; its subject names its account,
aggregate, id and type; its event id is not stored twice; its `prev_hash` is the digest of the
aggregate's previous stored message (the hash chain); and folding it is a legal transition.
A history that begins before the stream's first retained message (age or size retention) is
not a finding: its chain starts mid-way and its state machine path is not checked. Sequences
deleted inside the partition stream are findings: the engine never deletes an event.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from msgspec.structs import replace

from engine.errors import InvalidTransition
from engine.fold import evolve, record
from engine.sessions import evolve_session, evolve_workspace
from engine.store import digest_of
from schemas.api import JobResource
from schemas.audit import ExportRecord, Finding, StoredMessage, TimelineEntry
from schemas.events import (
    JobCancelled,
    JobCreated,
    JobEvent,
    JobFailed,
    JobRetried,
    JobStarted,
    JobSucceeded,
    StepFinished,
)
from schemas.log import AnyEvent, aggregate_of, decode_event
from schemas.sessions import SessionEvent, SessionState, WorkspaceEvent, WorkspaceState
from schemas.state import JobState

Key = tuple[str, str]  # (aggregate, id)
State = JobState | SessionState | WorkspaceState


@dataclass
class _Track:
    """What the auditor knows of one aggregate so far."""

    digest: str | None = None
    seq: int = 0
    state: State | None = None
    truncated: bool = False
    timeline: list[TimelineEntry] = field(default_factory=list)


@dataclass
class AuditResult:
    """Findings and the folded state of every aggregate of the log that was read."""

    findings: list[Finding]
    jobs: dict[str, JobState]
    sessions: dict[str, SessionState]
    workspaces: dict[str, WorkspaceState]
    timelines: dict[Key, list[TimelineEntry]]
    events: int
    first_seq: int | None
    last_seq: int | None
    truncated: list[str]


def parse_subject(subject: str) -> tuple[int, str, str, str, str] | None:
    """`chaser.<p>.<account>.<aggregate>.<id>.<Type>` as its parts, or None."""
    parts = subject.split(".")
    if len(parts) != 6 or parts[0] != "chaser" or not parts[1].isdigit():
        return None
    return int(parts[1]), parts[2], parts[3], parts[4], parts[5]


def fold_step(state: State | None, event: AnyEvent, seq: int, digest: str) -> State:
    """Apply one event to its aggregate's state; InvalidTransition when it is not legal."""
    if isinstance(event, JobEvent):
        assert state is None or isinstance(state, JobState)
        return record(evolve(state, event), seq=seq, digest=digest)
    if isinstance(event, SessionEvent):
        assert state is None or isinstance(state, SessionState)
        return replace(evolve_session(state, event), seq=seq, last_hash=digest)
    assert isinstance(event, WorkspaceEvent)
    assert state is None or isinstance(state, WorkspaceState)
    return replace(evolve_workspace(state, event), seq=seq, last_hash=digest)


def timeline_entry(seq: int, event: AnyEvent) -> TimelineEntry:
    """An event as a line of a timeline: when, what, who, which attempt, and its outcome."""
    return TimelineEntry(
        seq=seq,
        at=event.at,
        type=type(event).__name__,
        actor=event.actor,
        attempt=event.attempt if isinstance(event, JobEvent) else None,
        detail=_detail(event),
    )


def _detail(event: AnyEvent) -> dict[str, Any]:
    match event:
        case JobCreated():
            return {"kind": event.kind, "run_at": event.run_at, "max_attempts": event.max_attempts}
        case JobStarted():
            return {"executor_id": event.executor_id}
        case StepFinished():
            return {
                "step": event.index,
                "name": event.name,
                "status": event.status,
                "exit_code": event.exit_code,
                "result": event.result,
                "duration_ms": event.duration_ms,
            }
        case JobSucceeded():
            return {"result": event.result}
        case JobFailed():
            return {"error": event.error, "retriable": event.retriable}
        case JobCancelled():
            return {"reason": event.reason}
        case JobRetried():
            return {"run_at": event.run_at, "automatic": event.automatic}
        case _:
            return {}


class Auditor:
    """Reads one account's stored messages in stream order and checks each of them."""

    def __init__(self, account: str, *, first_seq: int = 1, timelines: bool = False) -> None:
        self.account = account
        self.first_seq = first_seq
        self.keep_timelines = timelines
        self.findings: list[Finding] = []
        self.tracks: dict[Key, _Track] = {}
        self.event_ids: dict[str, int] = {}
        self.events = 0
        self.seqs: list[int] = []

    def feed(self, messages: Iterable[StoredMessage]) -> None:
        """Check messages, in stream order."""
        for msg in messages:
            self.message(msg)

    def message(self, msg: StoredMessage) -> None:
        """Check one stored message and fold it."""
        parts = parse_subject(msg.subject)
        if parts is None or parts[1] != self.account:
            self._find("subject", msg, None, f"subject {msg.subject!r} is not one of the account")
            return
        key = (parts[2], parts[3])
        track = self.tracks.setdefault(key, _Track())
        self.events += 1
        self.seqs.append(msg.seq)
        digest = digest_of(msg.data)
        try:
            event = decode_event(msg.data)
        except msgspec.DecodeError as exc:
            self._find("decode", msg, key, f"does not decode as an event: {exc}")
        else:
            self._event(msg, key, track, event, parts, digest)
        track.digest, track.seq = digest, msg.seq

    def _event(
        self,
        msg: StoredMessage,
        key: Key,
        track: _Track,
        event: AnyEvent,
        parts: tuple[int, str, str, str, str],
        digest: str,
    ) -> None:
        named = (parts[0], parts[1], *aggregate_of(event), type(event).__name__)
        if named != (msg.partition, *parts[1:]):
            self._find("subject", msg, key, f"the event is {'.'.join(map(str, named))}", event)
        first = self.event_ids.setdefault(event.event_id, msg.seq)
        if first != msg.seq:
            self._find("duplicate", msg, key, f"event id already stored at seq {first}", event)
        self._chain(msg, key, track, event)
        if self.keep_timelines:
            track.timeline.append(timeline_entry(msg.seq, event))
        if track.truncated:
            return
        try:
            track.state = fold_step(track.state, event, msg.seq, digest)
        except InvalidTransition as exc:
            self._find("transition", msg, key, str(exc), event)

    def _chain(self, msg: StoredMessage, key: Key, track: _Track, event: AnyEvent) -> None:
        prev = event.prev_hash
        if track.digest is None:
            if prev and self.first_seq > 1:
                track.truncated = True  # its history began before the oldest retained event
            elif prev:
                self._find("chain", msg, key, "the first stored event has a prev_hash", event)
        elif prev != track.digest:
            detail = (
                f"prev_hash {prev[:12]}… is not {track.digest[:12]}…, the digest of seq {track.seq}"
            )
            self._find("chain", msg, key, detail, event)

    def gaps(self, partition: int, deleted: Iterable[int]) -> None:
        """Report sequences deleted inside the partition stream (the engine deletes none)."""
        for seq in sorted(deleted):
            self.findings.append(
                Finding(
                    check="gap",
                    partition=partition,
                    seq=seq,
                    detail=f"the partition stream has no message at seq {seq}: it was deleted",
                )
            )

    def _find(
        self,
        check: Any,
        msg: StoredMessage,
        key: Key | None,
        detail: str,
        event: AnyEvent | None = None,
    ) -> None:
        self.findings.append(
            Finding(
                check=check,
                detail=detail,
                seq=msg.seq,
                partition=msg.partition,
                aggregate=key[0] if key else None,
                id=key[1] if key else None,
                event_id=event.event_id if event is not None else None,
                event_type=type(event).__name__ if event is not None else None,
            )
        )

    def result(self) -> AuditResult:
        """Findings in stream order, and the folded states."""
        states = {key: t.state for key, t in self.tracks.items() if t.state is not None}
        return AuditResult(
            findings=sorted(self.findings, key=lambda f: (f.seq or 0, f.check)),
            jobs={k[1]: s for k, s in states.items() if isinstance(s, JobState)},
            sessions={k[1]: s for k, s in states.items() if isinstance(s, SessionState)},
            workspaces={k[1]: s for k, s in states.items() if isinstance(s, WorkspaceState)},
            timelines={k: t.timeline for k, t in self.tracks.items()},
            events=self.events,
            first_seq=min(self.seqs) if self.seqs else None,
            last_seq=max(self.seqs) if self.seqs else None,
            truncated=sorted(f"{k[0]} {k[1]}" for k, t in self.tracks.items() if t.truncated),
        )


def audit(
    account: str,
    messages: Iterable[StoredMessage],
    *,
    first_seq: int = 1,
    timelines: bool = False,
) -> AuditResult:
    """Check and fold an account's stored messages (in stream order)."""
    auditor = Auditor(account, first_seq=first_seq, timelines=timelines)
    auditor.feed(messages)
    return auditor.result()


def as_of(
    messages: Iterable[StoredMessage],
    *,
    until_seq: int | None = None,
    until: datetime | None = None,
    job_id: str | None = None,
) -> list[StoredMessage]:
    """The messages a replay as of a sequence or a time folds: each aggregate's history up to
    (not past) the first event after the point, optionally only one job's."""
    stopped: set[str] = set()
    out: list[StoredMessage] = []
    for msg in messages:
        if until_seq is not None and msg.seq > until_seq:
            break
        parts = parse_subject(msg.subject)
        ident = f"{parts[2]}.{parts[3]}" if parts else msg.subject
        if job_id is not None and ident != f"job.{job_id}":
            continue
        if until is not None and ident not in stopped and _after(msg, until):
            stopped.add(ident)
        if ident not in stopped:
            out.append(msg)
    return out


def _after(msg: StoredMessage, until: datetime) -> bool:
    try:
        return decode_event(msg.data).at > until
    except msgspec.DecodeError:
        return False


_export = msgspec.json.Encoder()
_import = msgspec.json.Decoder(ExportRecord)


def export_line(msg: StoredMessage) -> bytes:
    """One JSON Lines record of an export, holding the stored bytes exactly."""
    event, data = msgspec.Raw(msg.data), None
    try:
        if b"\n" in msg.data:
            raise msgspec.DecodeError("not one line")
        msgspec.json.decode(msg.data, type=msgspec.Raw)  # valid JSON, or base64 below
    except msgspec.DecodeError:
        event, data = msgspec.Raw(b"null"), base64.b64encode(msg.data).decode()
    record = ExportRecord(
        partition=msg.partition, seq=msg.seq, subject=msg.subject, event=event, data=data
    )
    return _export.encode(record) + b"\n"


def read_export(lines: Iterable[bytes]) -> Iterator[StoredMessage]:
    """The stored messages of an export, in its order; ValueError naming a malformed line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = _import.decode(line)
        except msgspec.DecodeError as exc:
            raise ValueError(f"line {number}: not an export record: {exc}") from exc
        data = bytes(record.event) if record.data is None else base64.b64decode(record.data)
        yield StoredMessage(record.partition, record.seq, record.subject, data)


def compare_read_model(
    folded: Mapping[str, JobState], live: Sequence[Mapping[str, Any]], *, upto: int
) -> list[Finding]:
    """Differences between the live read model's jobs (as the API shows them) and the fold of
    the log up to seq `upto`; jobs the read model shows changed after `upto` are skipped."""
    expected = {
        job_id: msgspec.json.decode(msgspec.json.encode(JobResource.of(state)))
        for job_id, state in folded.items()
    }
    shown = {str(job.get("id")): dict(job) for job in live}
    for job_id in [j for j, job in shown.items() if int(job.get("seq") or 0) > upto]:
        shown.pop(job_id)
        expected.pop(job_id, None)
    findings = []
    for job_id in sorted(set(expected) | set(shown)):
        mine, theirs = expected.get(job_id), shown.get(job_id)
        if mine is None or theirs is None:
            where = "the read model only" if mine is None else "the log only"
            findings.append(_differs(job_id, f"job is in {where}"))
            continue
        fields = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        if fields:
            findings.append(_differs(job_id, f"read model differs from the log in {fields}"))
    return findings


def _differs(job_id: str, detail: str) -> Finding:
    return Finding(check="read_model", aggregate="job", id=job_id, detail=detail)
