"""Messages of the work queue."""

from __future__ import annotations

import msgspec

from schemas.state import JobState


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """A runnable attempt as released to the work queue: the job's state at release."""

    state: JobState
