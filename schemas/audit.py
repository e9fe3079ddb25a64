"""What auditors read and get: the export line format, findings, timelines."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec

# A finding's check: what was verified and failed.
Check = Literal[
    "decode",  # a stored message is not an event this engine can read
    "subject",  # the subject does not name the event's account, aggregate, id and type
    "chain",  # prev_hash is not the digest of the aggregate's previous stored event
    "gap",  # a sequence is missing from the partition stream (deleted, not by retention)
    "duplicate",  # an event id stored twice
    "transition",  # the history is not a legal path through the state machine
    "read_model",  # the live read model differs from the fold of the log
]


class StoredMessage(msgspec.Struct, frozen=True, gc=False):
    """One stored message of an event stream, exactly as kept."""

    partition: int
    seq: int
    subject: str
    data: bytes


class ExportRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of `chaser audit export`: where an event is stored and its exact bytes.

    `event` is the stored JSON verbatim (msgspec.Raw), so digests and hash chains can be
    verified offline from the file alone; a stored message that is not one line of JSON is
    kept as base64 in `data` instead (and `event` is null).
    """

    partition: int
    seq: int
    subject: str
    event: msgspec.Raw
    data: str | None = None


class Finding(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Something the log does not prove: which check, where, and why."""

    check: Check
    detail: str
    seq: int | None = None
    partition: int | None = None
    aggregate: str | None = None
    id: str | None = None
    event_id: str | None = None
    event_type: str | None = None


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One event of a job's history as `chaser replay` prints it."""

    seq: int
    at: datetime
    type: str
    actor: str
    attempt: int | None = None
    detail: dict[str, Any] = {}


class AuditSummary(msgspec.Struct, frozen=True, kw_only=True):
    """What `chaser audit verify` checked and found."""

    account: str
    events: int
    jobs: int
    sessions: int
    workspaces: int
    first_seq: int | None
    last_seq: int | None
    truncated: list[str]
    # What the fold was compared with: the live read model through the API, a read model
    # rebuilt by the serving code, or nothing (an export checked offline).
    read_model: Literal["live", "rebuilt", "skipped"]
    findings: list[Finding]
