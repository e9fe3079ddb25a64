"""The pure job state machine: decisions, the fold, and the retry policy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from msgspec.structs import replace

from engine import decide
from engine.decide import MAX_BACKOFF, MAX_LEASE_LOSSES, Stamp
from engine.errors import InvalidTransition
from engine.fold import evolve, fold
from schemas.common import (
    LEASE_LOSS_CODES,
    RETRIABLE_FROM,
    TERMINAL,
    TRANSITIONS,
    JobError,
    JobStatus,
    StepStatus,
)
from schemas.events import AnyJobEvent, JobRetried, decode_job_event, encode_event
from schemas.state import JobState

T0 = datetime(2030, 1, 1, tzinfo=UTC)
ACCOUNT = "acme"
S = JobStatus

# Which decisions each status allows: the oracle the decisions are checked against.
LEGAL: dict[str, frozenset[JobStatus]] = {
    "queue_due": frozenset({S.SCHEDULED}),
    "start": frozenset({S.QUEUED}),
    "step_finished": frozenset({S.RUNNING}),
    "succeed": frozenset({S.RUNNING}),
    "fail": frozenset({S.QUEUED, S.RUNNING}),
    "cancel": frozenset({S.SCHEDULED, S.QUEUED, S.RUNNING}),
    "retry": RETRIABLE_FROM,
}

error_codes = st.sampled_from(["boom", "timeout", "exit_code", *sorted(LEASE_LOSS_CODES)])
json_results = st.none() | st.integers(-1000, 1000) | st.text(max_size=8) | st.lists(st.booleans())


class Clock:
    """A fake clock and id source: time moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = T0
        self.issued = 0

    def stamp(self, advance: timedelta = timedelta(seconds=1)) -> Stamp:
        self.now += advance
        self.issued += 1
        return Stamp(event_id=f"evt-{self.issued}", at=self.now, actor="test")


def new_job(clock: Clock, **fields: Any) -> JobState:
    event = decide.create(
        job_id="job_1",
        account=ACCOUNT,
        kind="system.echo",
        input={"message": "hi"},
        stamp=clock.stamp(),
        **fields,
    )
    return evolve(None, event)


def run(state: JobState, clock: Clock) -> JobState:
    return evolve(
        state, decide.start(state, attempt=state.attempt, executor_id="x", stamp=clock.stamp())
    )


def failed(state: JobState, clock: Clock, code: str = "boom", retriable: bool = True) -> JobState:
    error = JobError(code=code, message=code)
    return evolve(state, decide.fail(state, clock.stamp(), error, retriable=retriable))


# --- (a) the lifecycle as a rule-based state machine ---------------------------------


class JobLifecycle(RuleBasedStateMachine):
    """Drive one job through the decisions; check every step against TRANSITIONS and a replay."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.history: list[AnyJobEvent] = []
        self.state: JobState

    # helpers

    def _stamp(self, advance_ms: int) -> Stamp:
        return self.clock.stamp(timedelta(milliseconds=advance_ms))

    def _record(self, event: AnyJobEvent) -> None:
        before = self.state
        after = evolve(before, event)
        assert after.status in TRANSITIONS[before.status], (before.status, event)
        assert before.status is not S.SUCCEEDED
        if before.status in RETRIABLE_FROM:
            assert isinstance(event, JobRetried), f"{type(event).__name__} left {before.status}"
        self.history.append(event)
        self.state = after

    def _attempt(self, command: str, decision: Callable[[], AnyJobEvent]) -> None:
        before, length = self.state, len(self.history)
        snapshot = msgspec.json.encode(before)  # catches in-place edits of nested containers
        legal = before.status in LEGAL[command]
        try:
            event = decision()
        except InvalidTransition as exc:
            assert not legal, f"{command} refused from {before.status}: {exc}"
            assert self.state is before and len(self.history) == length
            assert msgspec.json.encode(self.state) == snapshot
            return
        assert legal, f"{command} allowed from {before.status}"
        self._record(event)

    # rules

    @initialize(
        run_in_ms=st.none() | st.integers(-60_000, 60_000),
        max_attempts=st.integers(1, 4),
        backoff_ms=st.integers(0, 5_000),
    )
    def create(self, run_in_ms: int | None, max_attempts: int, backoff_ms: int) -> None:
        stamp = self.clock.stamp()
        run_at = None if run_in_ms is None else stamp.at + timedelta(milliseconds=run_in_ms)
        event = decide.create(
            job_id="job_1",
            account=ACCOUNT,
            kind="system.echo",
            input={"message": "hi"},
            stamp=stamp,
            run_at=run_at,
            max_attempts=max_attempts,
            backoff_ms=backoff_ms,
        )
        self.state = evolve(None, event)
        self.history.append(event)
        due = run_at is None or run_at <= stamp.at
        assert self.state.status is (S.QUEUED if due else S.SCHEDULED)

    @rule(advance=st.integers(0, 10_000))
    def recreate(self, advance: int) -> None:
        event = decide.create(
            job_id=self.state.id,
            account=ACCOUNT,
            kind="system.echo",
            input={},
            stamp=self._stamp(advance),
        )
        with pytest.raises(InvalidTransition):
            evolve(self.state, event)

    @rule(advance=st.integers(0, 10_000))
    def queue_due(self, advance: int) -> None:
        self._attempt("queue_due", lambda: decide.queue_due(self.state, self._stamp(advance)))

    @rule(advance=st.integers(0, 10_000), off_by=st.sampled_from([0, 0, 0, -1, 1]))
    def start(self, advance: int, off_by: int) -> None:
        attempt = self.state.attempt + off_by
        if off_by and self.state.status is S.QUEUED:
            with pytest.raises(InvalidTransition):
                decide.start(self.state, attempt=attempt, executor_id="x", stamp=self._stamp(0))
            return
        self._attempt(
            "start",
            lambda: decide.start(
                self.state, attempt=attempt, executor_id="exec-1", stamp=self._stamp(advance)
            ),
        )

    @rule(
        advance=st.integers(0, 10_000),
        status=st.sampled_from(StepStatus),
        exit_code=st.none() | st.integers(0, 255),
        result=json_results,
    )
    def step_finished(
        self, advance: int, status: StepStatus, exit_code: int | None, result: Any
    ) -> None:
        index = len(self.state.steps)
        self._attempt(
            "step_finished",
            lambda: decide.step_finished(
                self.state,
                self._stamp(advance),
                index=index,
                name=f"step-{index}",
                status=status.value,
                exit_code=exit_code,
                result=result,
            ),
        )

    @rule(advance=st.integers(0, 10_000), result=json_results)
    def succeed(self, advance: int, result: Any) -> None:
        self._attempt("succeed", lambda: decide.succeed(self.state, self._stamp(advance), result))

    @rule(advance=st.integers(0, 10_000), code=error_codes, retriable=st.booleans())
    def fail(self, advance: int, code: str, retriable: bool) -> None:
        error = JobError(code=code, message=f"failed with {code}")
        self._attempt(
            "fail",
            lambda: decide.fail(self.state, self._stamp(advance), error, retriable=retriable),
        )

    @rule(advance=st.integers(0, 10_000))
    def cancel(self, advance: int) -> None:
        self._attempt("cancel", lambda: decide.cancel(self.state, self._stamp(advance)))

    @rule(advance=st.integers(0, 10_000))
    def retry(self, advance: int) -> None:
        self._attempt("retry", lambda: decide.retry(self.state, self._stamp(advance)))

    @rule(advance=st.integers(0, 10_000), jitter=st.floats(0, 1, exclude_max=True))
    def auto_retry(self, advance: int, jitter: float) -> None:
        state, stamp = self.state, self._stamp(advance)
        event = decide.auto_retry(state, stamp, jitter)
        if not (state.status is S.FAILED and state.retriable):
            assert event is None
            return
        lost = state.error is not None and state.error.code in LEASE_LOSS_CODES
        if lost and state.lost_leases <= MAX_LEASE_LOSSES:
            assert event is not None and event.run_at is None
        elif lost:
            assert event is None
        elif state.attempt - state.lost_leases < state.max_attempts:
            assert event is not None and event.run_at is not None
            nominal = timedelta(milliseconds=state.backoff_ms * 2 ** (state.attempt - 1))
            delay = event.run_at - stamp.at
            assert min(nominal / 2, MAX_BACKOFF) <= delay <= min(nominal * 1.5, MAX_BACKOFF)
        else:
            assert event is None
        if event is not None:
            assert event.automatic and event.attempt == state.attempt + 1
            self._record(event)

    # invariants

    @invariant()
    def replay_equals_live_state(self) -> None:
        assert fold(self.history) == self.state
        stored = [decode_job_event(encode_event(e)) for e in self.history]
        assert fold(stored) == self.state

    @invariant()
    def state_is_consistent(self) -> None:
        state = self.state
        assert state.events == len(self.history)
        assert 1 <= state.attempt == 1 + sum(isinstance(e, JobRetried) for e in self.history)
        assert (state.error is not None) == (state.status is S.FAILED)
        assert (state.finished_at is not None) == (state.status in TERMINAL)
        if state.status is S.RUNNING:
            assert state.executor_id is not None and state.started_at is not None
        if state.status is S.QUEUED:
            assert state.queued_at is not None
        if state.status is not S.RUNNING and state.status not in TERMINAL:
            assert state.steps == ()


JobLifecycle.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestJobLifecycle = JobLifecycle.TestCase


# --- (b) direct tests -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_in", "status"),
    [
        (None, S.QUEUED),
        (timedelta(seconds=-5), S.QUEUED),
        (timedelta(0), S.QUEUED),
        (timedelta(microseconds=1), S.SCHEDULED),
        (timedelta(days=3), S.SCHEDULED),
    ],
)
def test_run_at_in_the_future_schedules_the_job(
    run_in: timedelta | None, status: JobStatus
) -> None:
    clock = Clock()
    run_at = None if run_in is None else clock.now + timedelta(seconds=1) + run_in
    state = new_job(clock, run_at=run_at)
    assert state.status is status
    assert (state.queued_at is None) == (status is S.SCHEDULED)


def test_a_scheduled_job_is_queued_then_runs() -> None:
    clock = Clock()
    state = new_job(clock, run_at=T0 + timedelta(hours=1))
    state = evolve(state, decide.queue_due(state, clock.stamp()))
    assert state.status is S.QUEUED
    assert run(state, clock).status is S.RUNNING


@pytest.mark.parametrize("finish", ["failed", "cancelled"])
def test_queue_due_cannot_revive_a_finished_job(finish: str) -> None:
    clock = Clock()
    state = run(new_job(clock), clock)
    if finish == "failed":
        state = failed(state, clock)
    else:
        state = evolve(state, decide.cancel(state, clock.stamp()))
    try:
        event = decide.queue_due(state, clock.stamp())
    except InvalidTransition:
        event = None
    assert event is None, f"queue_due moved a {state.status} job to {evolve(state, event).status}"


def test_nothing_leaves_succeeded() -> None:
    clock = Clock()
    state = run(new_job(clock), clock)
    state = evolve(state, decide.succeed(state, clock.stamp(), {"ok": True}))
    error = JobError(code="boom", message="boom")
    decisions: list[Callable[[], object]] = [
        lambda: decide.queue_due(state, clock.stamp()),
        lambda: decide.start(state, attempt=1, executor_id="x", stamp=clock.stamp()),
        lambda: decide.step_finished(state, clock.stamp(), index=0, name="s", status="succeeded"),
        lambda: decide.succeed(state, clock.stamp(), None),
        lambda: decide.fail(state, clock.stamp(), error, retriable=True),
        lambda: decide.cancel(state, clock.stamp()),
        lambda: decide.retry(state, clock.stamp()),
    ]
    for decision in decisions:
        with pytest.raises(InvalidTransition):
            decision()
    assert decide.auto_retry(state, clock.stamp(), 0.5) is None


# retry policy


@given(
    max_attempts=st.integers(1, 6),
    backoff_ms=st.integers(0, 3_600_000),
    jitters=st.lists(st.floats(0, 1, exclude_max=True), min_size=8, max_size=8),
)
def test_auto_retry_obeys_max_attempts_and_backoff_bounds(
    max_attempts: int, backoff_ms: int, jitters: list[float]
) -> None:
    clock = Clock()
    state = new_job(clock, max_attempts=max_attempts, backoff_ms=backoff_ms)
    retries = 0
    for jitter in jitters:
        state = failed(run(state, clock), clock)
        stamp = clock.stamp()
        event = decide.auto_retry(state, stamp, jitter)
        if event is None:
            break
        retries += 1
        assert event.run_at is not None
        nominal = timedelta(milliseconds=backoff_ms * 2 ** (state.attempt - 1))
        delay = event.run_at - stamp.at
        assert min(nominal / 2, MAX_BACKOFF) <= delay <= min(nominal * 1.5, MAX_BACKOFF)
        state = evolve(state, event)
        assert state.status is (S.SCHEDULED if delay else S.QUEUED)
        if state.status is S.SCHEDULED:
            state = evolve(state, decide.queue_due(state, clock.stamp()))
    assert retries == max_attempts - 1
    assert state.attempt == max_attempts


def test_auto_retry_leaves_non_retriable_failures_alone() -> None:
    clock = Clock()
    state = failed(run(new_job(clock, max_attempts=5), clock), clock, retriable=False)
    assert decide.auto_retry(state, clock.stamp(), 0.5) is None


@given(
    attempt=st.integers(1, 30),
    backoff_ms=st.integers(0, 86_400_000),
    jitter=st.floats(0, 1, exclude_max=True),
)
def test_backoff_is_half_to_one_and_a_half_nominal_capped_at_an_hour(
    attempt: int, backoff_ms: int, jitter: float
) -> None:
    state = replace(new_job(Clock()), attempt=attempt, backoff_ms=backoff_ms)
    nominal = timedelta(milliseconds=backoff_ms * 2 ** (attempt - 1))
    delay = decide.backoff(state, jitter)
    assert min(nominal / 2, MAX_BACKOFF) <= delay <= min(nominal * 1.5, MAX_BACKOFF)


def test_backoff_stays_capped_for_late_attempts() -> None:
    state = replace(new_job(Clock()), attempt=100, backoff_ms=86_400_000)
    assert decide.backoff(state, 0.99) == MAX_BACKOFF


@pytest.mark.parametrize("code", sorted(LEASE_LOSS_CODES))
def test_lost_leases_retry_at_once_regardless_of_max_attempts(code: str) -> None:
    clock = Clock()
    state = new_job(clock, max_attempts=1, backoff_ms=60_000)
    for loss in range(1, MAX_LEASE_LOSSES + 1):
        state = failed(run(state, clock), clock, code=code)
        assert state.lost_leases == loss
        event = decide.auto_retry(state, clock.stamp(), 0.99)
        assert event is not None and event.run_at is None and event.automatic
        state = evolve(state, event)
        assert state.status is S.QUEUED and state.attempt == loss + 1
    state = failed(run(state, clock), clock, code=code)
    assert decide.auto_retry(state, clock.stamp(), 0.99) is None


# ids

accounts = st.from_regex(r"[a-z0-9_-]{1,63}", fullmatch=True)


@given(account=accounts, other=accounts, key=st.text(min_size=1, max_size=255))
def test_idempotent_job_id_is_stable_per_account_and_key(
    account: str, other: str, key: str
) -> None:
    assume(account != other)
    job_id = decide.idempotent_job_id(account, key)
    assert job_id == decide.idempotent_job_id(account, key)
    assert job_id != decide.idempotent_job_id(other, key)
    assert job_id != decide.idempotent_job_id(account, key + "x")
    assert job_id.startswith("job_") and job_id.isascii()


@given(
    first=st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1), timezones=st.just(UTC)),
    entropy=st.binary(min_size=10, max_size=10),
    other=st.binary(min_size=10, max_size=10),
)
def test_job_ids_are_unique_per_entropy(first: datetime, entropy: bytes, other: bytes) -> None:
    assume(entropy != other)
    assert decide.job_id_for(at=first, entropy=entropy) != decide.job_id_for(
        at=first, entropy=other
    )
    assert decide.job_id_for(at=first, entropy=entropy) == decide.job_id_for(
        at=first, entropy=entropy
    )


def test_job_ids_sort_by_time() -> None:
    # Over 300 consecutive milliseconds every character that encodes the low bits of the
    # time runs through all 32 symbols, so any mis-ordered alphabet shows up.
    times = [T0 + timedelta(milliseconds=ms) for ms in range(300)]
    ids = [decide.job_id_for(at=t, entropy=bytes(10)) for t in times]
    assert ids == sorted(ids)
