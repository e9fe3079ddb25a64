"""The command side: load state, decide, append with the expected sequence, read your write."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import structlog

from engine import decide
from engine.appending import append_decided
from engine.errors import ConcurrencyConflict, IdempotencyConflict, InvalidInput, NotFound
from engine.fold import evolve, record
from engine.projection import ReadModel
from engine.store import EventStore, Recorded
from schemas.api import CreateJobRequest
from schemas.events import AnyJobEvent, JobEvent
from schemas.kinds import KINDS, Input, validate_input
from schemas.state import JobState

log = structlog.get_logger("chaser.service")

CONFLICT_TRIES = 8
_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")


def _seq(state: JobState) -> int:
    return state.seq


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def new_event_id() -> str:
    """A unique event id (also the JetStream de-duplication id)."""
    return uuid.uuid4().hex


def validation_problem(exc: msgspec.ValidationError, prefix: str) -> InvalidInput:
    """Turn msgspec's message into a field name (`input.command`) and a reason."""
    text = str(exc)
    match = _PATH.search(text)
    path = match.group("path") if match else ""
    reason = _PATH.sub("", text)
    field = (prefix + path.replace("[", ".").replace("]", "")).strip(".")
    missing = re.match(r"Object missing required field `(?P<name>[^`]+)`", reason)
    if missing:
        field = ".".join(part for part in (field, missing.group("name")) if part)
    unknown = re.match(r"Object contains unknown field `(?P<name>[^`]+)`", reason)
    if unknown:
        field = ".".join(part for part in (field, unknown.group("name")) if part)
    return InvalidInput(field or prefix or "body", reason)


class JobService:
    """Commands on jobs for one deployment; every change is an appended event."""

    def __init__(
        self,
        store: EventStore,
        read_model: ReadModel,
        *,
        read_wait: float = 5.0,
        clock: Callable[[], datetime] = utcnow,
        entropy: Callable[[int], bytes] = os.urandom,
        check_input: Callable[[str, Input], None] | None = None,
        seal_input: Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.store = store
        self.read_model = read_model
        self._read_wait = read_wait
        self._clock = clock
        self._entropy = entropy
        # The deployment's own rules on inputs (e.g. sandbox maxima); raises InvalidInput.
        self._check_input = check_input
        # Takes secrets out of an input before it is stored (account, kind, input).
        self._seal_input = seal_input

    def stamp(self, actor: str, **extra: Any) -> decide.Stamp:
        """A fresh event id and time for an actor."""
        return decide.Stamp(event_id=new_event_id(), at=self._clock(), actor=actor, **extra)

    async def create(
        self, account: str, actor: str, request: CreateJobRequest
    ) -> tuple[JobState, bool]:
        """Create a job; with a used idempotency key return the original (created=False)."""
        if request.kind not in KINDS:
            raise InvalidInput("kind", f"unknown kind {request.kind!r}; see GET /v1/jobs/kinds")
        try:
            parsed = validate_input(request.kind, request.input)
        except msgspec.ValidationError as exc:
            raise validation_problem(exc, "input") from exc
        if self._check_input is not None:
            self._check_input(request.kind, parsed)
        stamp = self.stamp(actor)
        digest = None
        if request.idempotency_key is not None:
            job_id = decide.idempotent_job_id(account, request.idempotency_key)
            body = msgspec.to_builtins(request)
            body.pop("idempotency_key", None)
            digest = decide.request_digest(body)
        else:
            job_id = decide.job_id_for(at=stamp.at, entropy=self._entropy(10))
        stored = request.input
        if self._seal_input is not None:
            stored = await self._seal_input(account, request.kind, request.input)
        event = decide.create(
            job_id=job_id,
            account=account,
            kind=request.kind,
            input=stored,
            stamp=stamp,
            run_at=request.run_at,
            max_attempts=request.max_attempts,
            idempotency_key=request.idempotency_key,
            digest=digest,
            retry_on_exit=request.retry_on_exit,
            backoff_ms=request.backoff_ms,
        )
        try:
            rec = await self.store.append(event, expected_seq=0)
        except ConcurrencyConflict:
            existing = await self.load(account, job_id)
            if existing.request_digest != digest:
                raise IdempotencyConflict(request.idempotency_key or "", job_id) from None
            return existing, False
        log.info("job_created", account=account, job_id=job_id, kind=request.kind, seq=rec.seq)
        return await self._read_back(None, rec), True

    async def cancel(self, account: str, actor: str, job_id: str) -> JobState:
        """Cancel a job that is not terminal yet."""
        return await self._change(
            account, job_id, lambda state: decide.cancel(state, self.stamp(actor))
        )

    async def retry(self, account: str, actor: str, job_id: str) -> JobState:
        """Retry a failed or cancelled job as a new attempt."""
        return await self._change(
            account, job_id, lambda state: decide.retry(state, self.stamp(actor))
        )

    async def get(self, account: str, job_id: str) -> JobState:
        """A job of this account; NotFound for a missing or foreign id."""
        state = self.read_model.get(account, job_id)
        if state is None:
            raise NotFound("job", job_id)
        return state

    async def catch_up(self, account: str) -> None:
        """Read-your-writes across processes: wait until the read model holds every event of
        the account's partition that was stored before this call."""
        partition = self.read_model.partition_of(account)
        last = await self.store.last_seq(partition)
        await self.read_model.wait_for(partition, last, self._read_wait)

    async def load(self, account: str, job_id: str) -> JobState:
        """A job's state folded straight from its stored history (never stale)."""
        state: JobState | None = None
        for rec in await self.store.history(account, job_id):
            assert isinstance(rec.event, JobEvent)
            state = record(evolve(state, rec.event), seq=rec.seq, digest=rec.digest)
        if state is None:
            raise NotFound("job", job_id)
        return state

    async def _change(
        self, account: str, job_id: str, decision: Callable[[JobState], AnyJobEvent]
    ) -> JobState:
        state = self.read_model.get(account, job_id) or await self.load(account, job_id)
        decided = await append_decided(
            self.store,
            state,
            decision,
            reload=lambda: self.load(account, job_id),
            seq_of=_seq,
            tries=CONFLICT_TRIES,
        )
        assert decided is not None
        state, event, rec = decided
        log.info(
            "job_" + type(event).__name__.removeprefix("Job").lower(),
            account=account,
            job_id=job_id,
            seq=rec.seq,
        )
        return await self._read_back(state, rec)

    async def _read_back(self, before: JobState | None, rec: Recorded) -> JobState:
        """Read-your-writes: wait for the projection to apply `rec`, else fold it locally."""
        event = rec.event
        assert isinstance(event, JobEvent)
        if await self.read_model.wait_for(rec.partition, rec.seq, self._read_wait):
            state = self.read_model.get(event.account, event.job_id)
            if state is not None:
                return state
        return record(evolve(before, event), seq=rec.seq, digest=rec.digest)
