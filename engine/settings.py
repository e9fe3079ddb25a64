"""Settings: one frozen struct built from `CHASER_*` environment variables at start-up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import msgspec

ROLES = frozenset({"api", "dispatcher", "executor"})


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Everything a Chaser process is configured with."""

    nats_url: str | None = None
    data_dir: Path = Path(".chaser")
    host: str = "127.0.0.1"
    port: int = 8080
    partitions: int = 4
    replicas: int | None = None
    account_concurrency: int = 16
    executor_concurrency: int = 64
    lease_seconds: float = 30.0
    shutdown_grace_seconds: float = 10.0
    event_max_age_days: float = 30.0
    event_max_bytes: int = -1
    log_max_age_days: float = 7.0
    log_level: str = "info"
    log_json: bool | None = None
    roles: frozenset[str] = ROLES
    executor_families: frozenset[str] = frozenset({"system", "lifecycle"})
    read_wait_seconds: float = 5.0
    max_body_bytes: int = 1_048_576

    @property
    def effective_replicas(self) -> int:
        """Stream replicas: 1 on the embedded server, 3 on an external cluster unless set."""
        if self.replicas is not None:
            return self.replicas
        return 1 if self.nats_url is None else 3


def _csv(value: str) -> frozenset[str]:
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


_PARSERS = {
    "nats_url": str,
    "data_dir": Path,
    "host": str,
    "port": int,
    "partitions": int,
    "replicas": int,
    "account_concurrency": int,
    "executor_concurrency": int,
    "lease_seconds": float,
    "shutdown_grace_seconds": float,
    "event_max_age_days": float,
    "event_max_bytes": int,
    "log_max_age_days": float,
    "log_level": str,
    "log_json": _bool,
    "roles": _csv,
    "executor_families": _csv,
    "read_wait_seconds": float,
    "max_body_bytes": int,
}


def settings_from_env(environ: Mapping[str, str], **overrides: object) -> Settings:
    """Build settings from `CHASER_<NAME>` variables; explicit overrides win."""
    values: dict[str, object] = {}
    for name, parse in _PARSERS.items():
        raw = environ.get(f"CHASER_{name.upper()}")
        if raw not in (None, ""):
            try:
                values[name] = parse(raw)  # type: ignore[operator]
            except ValueError as exc:
                raise ValueError(f"CHASER_{name.upper()}: {exc}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]
