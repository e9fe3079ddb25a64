"""Self-hosted runners as executors advertise them and `GET /v1/runners` lists them."""

from __future__ import annotations

from datetime import datetime

import msgspec


class RunnerView(msgspec.Struct, frozen=True, kw_only=True):
    """One runner of a live `github` executor: its labels, image and load."""

    name: str
    labels: list[str]
    image: str
    capacity: int
    running: int
    status: str  # idle | busy
    executor_id: str
    seen_at: datetime


class RunnerPage(msgspec.Struct, frozen=True, kw_only=True):
    """Body of `GET /v1/runners`."""

    items: list[RunnerView]
