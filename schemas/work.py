"""Messages of the work queue."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class WorkItem(msgspec.Struct, frozen=True, kw_only=True):
    """A runnable attempt as released to the work queue."""

    job_id: str
    account: str
    kind: str
    attempt: int
    input: dict[str, Any]
    seq: int
    last_hash: str
    queued_at: datetime | None = None
