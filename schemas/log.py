"""The whole event log's vocabulary: every aggregate's events, one union, one decoder."""

from __future__ import annotations

import msgspec

from schemas.events import AnyJobEvent, JobEvent
from schemas.sessions import AnySessionEvent, AnyWorkspaceEvent, SessionEvent, WorkspaceEvent

AnyEvent = AnyJobEvent | AnySessionEvent | AnyWorkspaceEvent

_decoder = msgspec.json.Decoder(AnyEvent)


def decode_event(data: bytes) -> AnyEvent:
    """Decode a stored event of any aggregate; raises msgspec.DecodeError on anything else."""
    event: AnyEvent = _decoder.decode(data)
    return event


def aggregate_of(event: AnyEvent) -> tuple[str, str]:
    """The aggregate an event belongs to: (`job` | `session` | `workspace`, its id)."""
    if isinstance(event, JobEvent):
        return "job", event.job_id
    if isinstance(event, SessionEvent):
        return "session", event.session_id
    if isinstance(event, WorkspaceEvent):
        return "workspace", event.workspace
    raise TypeError(f"not an event of a known aggregate: {type(event).__name__}")
