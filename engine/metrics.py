"""Prometheus metrics, fed by the read model's stream of applied events. Text format by hand."""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable

from engine.store import Recorded
from schemas.common import TERMINAL, JobStatus
from schemas.state import JobState

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Histogram:
    """A cumulative histogram with fixed buckets."""

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        """Count one observation."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1


class Metrics:
    """Counters of jobs created and finished, and enqueue→start latency."""

    def __init__(self) -> None:
        self.created: Counter[str] = Counter()
        self.finished: Counter[tuple[str, str]] = Counter()
        self.start_latency = Histogram()
        self.live = False

    def on_event(self, before: JobState | None, after: JobState, rec: Recorded) -> None:
        """Read-model listener: count transitions once the initial catch-up is done."""
        if not self.live:
            return
        if before is None:
            self.created[after.kind] += 1
            return
        if after.status in TERMINAL and before.status not in TERMINAL:
            self.finished[(after.kind, after.status.value)] += 1
        elif (
            after.status is JobStatus.RUNNING
            and before.status is JobStatus.QUEUED
            and after.started_at is not None
            and before.queued_at is not None
        ):
            delay = (after.started_at - before.queued_at).total_seconds()
            self.start_latency.observe(max(delay, 0.0))

    def render(
        self, *, queue_depth: dict[str, int], lag_seconds: float, extra: Callable[[], str] | None
    ) -> str:
        """The Prometheus text exposition of every metric."""
        lines = [
            "# HELP chaser_jobs_created_total Jobs created, by kind.",
            "# TYPE chaser_jobs_created_total counter",
        ]
        lines += [f'chaser_jobs_created_total{{kind="{k}"}} {v}' for k, v in self.created.items()]
        lines += [
            "# HELP chaser_jobs_finished_total Jobs that reached a terminal status.",
            "# TYPE chaser_jobs_finished_total counter",
        ]
        lines += [
            f'chaser_jobs_finished_total{{kind="{k}",status="{s}"}} {v}'
            for (k, s), v in self.finished.items()
        ]
        lines += [
            "# HELP chaser_queue_depth Queued jobs not yet started, by kind.",
            "# TYPE chaser_queue_depth gauge",
        ]
        lines += [f'chaser_queue_depth{{kind="{k}"}} {v}' for k, v in queue_depth.items()]
        lines += [
            "# HELP chaser_enqueue_to_start_seconds Time from queued to started.",
            "# TYPE chaser_enqueue_to_start_seconds histogram",
        ]
        running = 0
        hist = self.start_latency
        for bound, count in zip(hist.buckets, hist.counts, strict=False):
            running += count
            lines.append(f'chaser_enqueue_to_start_seconds_bucket{{le="{bound}"}} {running}')
        lines.append(f'chaser_enqueue_to_start_seconds_bucket{{le="+Inf"}} {hist.n}')
        lines.append(f"chaser_enqueue_to_start_seconds_sum {hist.total}")
        lines.append(f"chaser_enqueue_to_start_seconds_count {hist.n}")
        lines += [
            "# HELP chaser_projection_lag_seconds Age of the newest event when it was folded.",
            "# TYPE chaser_projection_lag_seconds gauge",
            f"chaser_projection_lag_seconds {lag_seconds}",
        ]
        if extra is not None:
            lines.append(extra())
        return "\n".join(lines) + "\n"
