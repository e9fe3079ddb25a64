"""What subscribers see of the log, and how they choose: event types, filters, the event JSON.

Pure: no I/O. Shared by the SSE and WebSocket feeds and by webhook deliveries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import get_args

import msgspec

from engine.errors import InvalidInput
from engine.subjects import account_filter, aggregate_filter
from schemas.common import TERMINAL
from schemas.events import JobEvent
from schemas.log import AnyEvent
from schemas.sessions import SessionEvent
from schemas.state import JobState

_EVENT_CLASSES: tuple[type[msgspec.Struct], ...] = get_args(AnyEvent)


def _tag(cls: type[msgspec.Struct]) -> str:
    return str(cls.__struct_config__.tag)


def _aggregate(cls: type[msgspec.Struct]) -> str:
    if issubclass(cls, JobEvent):
        return "job"
    return "session" if issubclass(cls, SessionEvent) else "workspace"


# Every event type (the `type` field and the last subject token) and its aggregate.
AGGREGATE_OF_TYPE: dict[str, str] = {_tag(cls): _aggregate(cls) for cls in _EVENT_CLASSES}
EVENT_TYPES: frozenset[str] = frozenset(AGGREGATE_OF_TYPE)
TERMINAL_TYPES: frozenset[str] = frozenset({"JobSucceeded", "JobFailed", "JobCancelled"})


def subscriber_json(data: bytes, seq: int) -> bytes:
    """The stored event JSON with its stream sequence added as `seq`, without re-encoding."""
    body = data.rstrip()
    return body[:-1] + b',"seq":' + str(seq).encode() + b"}"


def check_types(types: Iterable[str], field: str = "type") -> frozenset[str]:
    """The event types asked for; InvalidInput naming an unknown one."""
    wanted = frozenset(types)
    unknown = sorted(wanted - EVENT_TYPES)
    if unknown:
        raise InvalidInput(field, f"unknown event type {unknown[0]!r}")
    return wanted


def job_id_of(event: AnyEvent) -> str | None:
    """The job an event is about: its own job, or the job that acted on a session/workspace."""
    return getattr(event, "job_id", None)


KindOf = Callable[[AnyEvent], str | None]


class EventFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which events a subscriber wants: one job, some job kinds, some event types."""

    job_id: str | None = None
    kinds: frozenset[str] | None = None
    types: frozenset[str] | None = None

    def matches(self, event: AnyEvent, kind_of: KindOf) -> bool:
        """Whether an event passes every filter (`kind_of` finds a job event's kind)."""
        if self.types is not None and type(event).__name__ not in self.types:
            return False
        if self.job_id is not None and not (
            isinstance(event, JobEvent) and event.job_id == self.job_id
        ):
            return False
        return self.kinds is None or kind_of(event) in self.kinds

    def subject(self, partition: int, account: str) -> str:
        """The narrowest subject filter that still holds every matching event."""
        if self.job_id is not None:
            return aggregate_filter(partition, account, "job", self.job_id)
        return account_filter(partition, account)


def kind_lookup(get: Callable[[str, str], JobState | None]) -> KindOf:
    """A `kind_of` reading job kinds from a read model's `get(account, job_id)`."""

    def kind_of(event: AnyEvent) -> str | None:
        if not isinstance(event, JobEvent):
            return None
        kind = getattr(event, "kind", None)
        if kind is not None:
            return str(kind)
        state = get(event.account, event.job_id)
        return state.kind if state is not None else None

    return kind_of


def ends_job(state: JobState | None, seq: int) -> bool:
    """Whether the event at `seq` left the job terminal with nothing after it."""
    return state is not None and state.seq <= seq and state.status in TERMINAL
