"""The job state machine as a fold: `evolve(state, event) -> state`. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable
from typing import assert_never

from msgspec.structs import replace

from engine.errors import InvalidTransition
from schemas.common import LEASE_LOSS_CODES, TRANSITIONS, JobStatus
from schemas.events import (
    AnyJobEvent,
    JobCancelled,
    JobCreated,
    JobFailed,
    JobQueued,
    JobRetried,
    JobStarted,
    JobSucceeded,
    StepFinished,
)
from schemas.state import JobState, StepRecord

# Which statuses each event may be applied in: TRANSITIONS says where a status may go, this
# says which event may take it there (only a retry leaves failed or cancelled, only a start
# leaves queued for running).
SOURCES: dict[type[AnyJobEvent], frozenset[JobStatus]] = {
    JobCreated: frozenset(),
    JobQueued: frozenset({JobStatus.SCHEDULED}),
    JobStarted: frozenset({JobStatus.QUEUED}),
    StepFinished: frozenset({JobStatus.RUNNING}),
    JobSucceeded: frozenset({JobStatus.RUNNING}),
    JobFailed: frozenset({JobStatus.QUEUED, JobStatus.RUNNING}),
    JobCancelled: frozenset({JobStatus.SCHEDULED, JobStatus.QUEUED, JobStatus.RUNNING}),
    JobRetried: frozenset({JobStatus.FAILED, JobStatus.CANCELLED}),
}
# The same two tables keyed by plain strings: hashing a StrEnum member runs Enum.__hash__ in
# Python, and `check` runs for every event of a rebuild from the log.
_NEXT: dict[str, frozenset[str]] = {
    status.value: frozenset(t.value for t in targets) for status, targets in TRANSITIONS.items()
}
_FROM: dict[type[AnyJobEvent], frozenset[str]] = {
    kind: frozenset(s.value for s in sources) for kind, sources in SOURCES.items()
}


def target_status(state: JobState | None, event: AnyJobEvent) -> JobStatus:
    """The status `event` moves a job to; the fold and the decisions share this one answer."""
    match event:
        case JobCreated():
            due = event.run_at is None or event.run_at <= event.at
            return JobStatus.QUEUED if due else JobStatus.SCHEDULED
        case JobQueued():
            return JobStatus.QUEUED
        case JobStarted() | StepFinished():
            return JobStatus.RUNNING
        case JobSucceeded():
            return JobStatus.SUCCEEDED
        case JobFailed():
            return JobStatus.FAILED
        case JobCancelled():
            return JobStatus.CANCELLED
        case JobRetried():
            due = event.run_at is None or event.run_at <= event.at
            return JobStatus.QUEUED if due else JobStatus.SCHEDULED
        case _:
            assert_never(event)


def check(state: JobState | None, event: AnyJobEvent) -> JobStatus:
    """Return the status after `event`, or raise InvalidTransition if it is not allowed."""
    target = target_status(state, event)
    kind = type(event)
    if state is None:
        if kind is JobCreated:
            return target
        raise InvalidTransition(event.job_id, "absent", kind.__name__)
    # No status is a source of JobCreated (_FROM is empty for it): a second creation fails here.
    status = str(state.status)
    if str(target) not in _NEXT[status] or status not in _FROM[kind]:
        raise InvalidTransition(state.id, state.status, kind.__name__)
    expected_attempt = state.attempt + 1 if kind is JobRetried else state.attempt
    if event.attempt != expected_attempt:
        where = f"{state.status} at attempt {state.attempt}"
        raise InvalidTransition(state.id, where, kind.__name__)
    return target


def evolve(state: JobState | None, event: AnyJobEvent) -> JobState:
    """Apply one event; raises InvalidTransition for an event the state machine forbids."""
    status = check(state, event)
    if isinstance(event, JobCreated):
        return _created(event, status)
    assert state is not None
    state = replace(state, status=status, updated_at=event.at, events=state.events + 1)
    match event:
        case JobQueued():
            return replace(state, queued_at=event.at)
        case JobStarted():
            return replace(state, started_at=event.at, executor_id=event.executor_id)
        case StepFinished():
            return replace(state, steps=(*state.steps, _step(event)))
        case JobSucceeded():
            return replace(state, finished_at=event.at, result=event.result)
        case JobFailed():
            return replace(
                state,
                finished_at=event.at,
                error=event.error,
                retriable=event.retriable,
                result=event.result,
                lost_leases=state.lost_leases + (event.error.code in LEASE_LOSS_CODES),
            )
        case JobCancelled():
            return replace(state, finished_at=event.at)
        case JobRetried():
            return replace(
                state,
                attempt=event.attempt,
                run_at=event.run_at if event.run_at is not None else state.run_at,
                queued_at=event.at if status is JobStatus.QUEUED else None,
                started_at=None,
                finished_at=None,
                steps=(),
                result=None,
                error=None,
                retriable=False,
                executor_id=None,
            )
        case JobCreated():  # handled above; kept for exhaustiveness
            raise AssertionError("unreachable")
        case _:
            assert_never(event)


def _created(event: JobCreated, status: JobStatus) -> JobState:
    return JobState(
        id=event.job_id,
        account=event.account,
        kind=event.kind,
        input=event.input,
        status=status,
        attempt=event.attempt,
        max_attempts=event.max_attempts,
        run_at=event.run_at,
        idempotency_key=event.idempotency_key,
        created_at=event.at,
        updated_at=event.at,
        queued_at=event.at if status is JobStatus.QUEUED else None,
        retry_on_exit=event.retry_on_exit,
        backoff_ms=event.backoff_ms,
        request_digest=event.request_digest,
        events=1,
    )


def _step(event: StepFinished) -> StepRecord:
    return StepRecord(
        index=event.index,
        name=event.name,
        status=event.status,
        exit_code=event.exit_code,
        result=event.result,
        duration_ms=event.duration_ms,
        output_tail=event.output_tail,
        output_bytes=event.output_bytes,
    )


def record(state: JobState, *, seq: int, digest: str) -> JobState:
    """Stamp the stream position and hash of the event just folded into `state`."""
    return replace(state, seq=seq, last_hash=digest)


def fold(events: Iterable[AnyJobEvent], state: JobState | None = None) -> JobState | None:
    """Fold a whole history (positions are left as they were)."""
    for event in events:
        state = evolve(state, event)
    return state
