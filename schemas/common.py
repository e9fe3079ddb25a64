"""Enums and small value types shared by events, state and the API."""

from __future__ import annotations

import re
from enum import StrEnum

import msgspec


class JobStatus(StrEnum):
    """Where a job is in its lifecycle."""

    SCHEDULED = "scheduled"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The state machine as data: each status and the statuses it may move to.
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.SCHEDULED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED}),
    JobStatus.CANCELLED: frozenset({JobStatus.QUEUED, JobStatus.SCHEDULED}),
}

TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED}
)
# Failures that mean the engine lost the job, not that the job itself went wrong.
LEASE_LOSS_CODES: frozenset[str] = frozenset({"executor_lost", "executor_shutdown"})
RETRIABLE_FROM: frozenset[JobStatus] = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


class StepStatus(StrEnum):
    """How one step of an attempt ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


class JobError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a job failed: a stable machine-readable code and a human message."""

    code: str
    message: str


ACCOUNT_PATTERN = re.compile(r"^[a-z0-9_-]{1,63}$")


def account_problem(account: str) -> str | None:
    """Say why an account id is not subject-safe, or None when it is fine."""
    if ACCOUNT_PATTERN.fullmatch(account):
        return None
    return "account ids are 1 to 63 characters of lower-case letters, digits, '-' and '_'"
