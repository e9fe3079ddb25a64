"""Subject and stream names: where each account's events live. Pure."""

from __future__ import annotations

import zlib
from collections.abc import Iterable

EVENTS_PREFIX = "chaser"
WORK_STREAM = "CHASER_WORK"
LOG_STREAM = "CHASER_LOGS"
CONTROL_STREAM = "CHASER_CONTROL"
META_BUCKET = "CHASER_META"
KEYS_BUCKET = "CHASER_KEYS"


def partition_of(account: str, partitions: int) -> int:
    """A stable partition for an account: crc32 of its id modulo the partition count."""
    return zlib.crc32(account.encode()) % partitions


def stream_name(partition: int) -> str:
    """The stream that owns a partition's subjects."""
    return f"CHASER_EVENTS_{partition}"


def partition_subjects(partition: int) -> str:
    """The wildcard a partition's stream owns."""
    return f"{EVENTS_PREFIX}.{partition}.>"


def aggregate_subject(
    partition: int, account: str, aggregate: str, ident: str, event_type: str
) -> str:
    """Subject of one event of one aggregate instance (a job, a session, a workspace)."""
    return f"{EVENTS_PREFIX}.{partition}.{account}.{aggregate}.{ident}.{event_type}"


def aggregate_filter(partition: int, account: str, aggregate: str, ident: str) -> str:
    """Wildcard matching every event of one aggregate instance (its concurrency scope)."""
    return f"{EVENTS_PREFIX}.{partition}.{account}.{aggregate}.{ident}.*"


def job_subject(partition: int, account: str, job_id: str, event_type: str) -> str:
    """Subject of one event of one job."""
    return aggregate_subject(partition, account, "job", job_id, event_type)


def job_filter(partition: int, account: str, job_id: str) -> str:
    """Wildcard matching every event of one job (the optimistic-concurrency scope)."""
    return aggregate_filter(partition, account, "job", job_id)


def account_filter(partition: int, account: str) -> str:
    """Wildcard matching every event of one account."""
    return f"{EVENTS_PREFIX}.{partition}.{account}.>"


def work_subject(kind: str, account: str) -> str:
    """Work-queue subject of a runnable job: `chaser.work.<kind>.<account>`."""
    return f"{EVENTS_PREFIX}.work.{kind}.{account}"


def work_filters(kinds: Iterable[str]) -> list[str]:
    """Work-queue filters of an executor pool: one per kind it runs, any account."""
    return sorted(f"{EVENTS_PREFIX}.work.{kind}.*" for kind in kinds)


def log_subject(account: str, job_id: str, attempt: int, channel: str) -> str:
    """Subject of a job attempt's full output on the log stream."""
    return f"{EVENTS_PREFIX}.logs.{account}.{job_id}.{attempt}.{channel}"


def control_subject(family: str, account: str) -> str:
    """Work-queue subject of a session to open by an executor family."""
    return f"{EVENTS_PREFIX}.control.{family}.{account}"


def control_filter(family: str) -> str:
    """Control wildcard of one executor family."""
    return f"{EVENTS_PREFIX}.control.{family}.*"


def session_events(event_type: str) -> str:
    """Wildcard of one session event type in every partition and account."""
    return f"{EVENTS_PREFIX}.*.*.session.*.{event_type}"
