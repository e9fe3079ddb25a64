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
    # `sandbox` and `github` are served only when Docker answers at start-up, `browser` only
    # when a Chromium binary is found (see cli/server.py).
    executor_families: frozenset[str] = frozenset(
        {"system", "lifecycle", "sandbox", "browser", "github"}
    )
    read_wait_seconds: float = 5.0
    max_body_bytes: int = 1_048_576
    # Webhook URLs: networks and host names allowed despite the public-address rule.
    webhook_allow: frozenset[str] = frozenset()
    webhook_timeout_seconds: float = 10.0
    # Sandboxes (Docker): the image when a job names none, networks, limits and their maxima.
    default_image: str = "debian:bookworm-slim"
    sandbox_network: str = "none"
    sandbox_workspace_network: str = "bridge"
    sandbox_cpu: float = 1.0
    sandbox_memory_mb: int = 512
    sandbox_pids: int = 512
    sandbox_max_cpu: float = 4.0
    sandbox_max_memory_mb: int = 8192
    sandbox_max_pids: int = 4096
    sandbox_timeout_seconds: float = 3600.0
    sandbox_output_tail_bytes: int = 65536
    sandbox_warm_containers: int = 2
    sandbox_idle_seconds: float = 300.0
    # Browsers (Chromium over CDP): the binary (default: found on PATH), networks and hosts
    # the browser may reach despite the default refusal of non-public addresses, how many
    # browsers, how many job pages at once, and whether a fresh page is kept ready.
    chromium: str | None = None
    browser_allow: frozenset[str] = frozenset()
    browser_pool_size: int = 2
    browser_max_pages: int = 8
    browser_prewarm: bool = True
    # GitHub Actions runners (`github.runner`): label sets and images (format in
    # executors/github/runners.py), actions provided offline, and how long a job whose
    # `runs-on` no runner serves waits in the queue before it fails.
    runners: str = ""
    actions_dir: str | None = None
    github_queue_timeout_seconds: float = 600.0

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
    "webhook_allow": _csv,
    "webhook_timeout_seconds": float,
    "default_image": str,
    "sandbox_network": str,
    "sandbox_workspace_network": str,
    "sandbox_cpu": float,
    "sandbox_memory_mb": int,
    "sandbox_pids": int,
    "sandbox_max_cpu": float,
    "sandbox_max_memory_mb": int,
    "sandbox_max_pids": int,
    "sandbox_timeout_seconds": float,
    "sandbox_output_tail_bytes": int,
    "sandbox_warm_containers": int,
    "sandbox_idle_seconds": float,
    "chromium": str,
    "browser_allow": _csv,
    "browser_pool_size": int,
    "browser_max_pages": int,
    "browser_prewarm": _bool,
    "runners": str,
    "actions_dir": str,
    "github_queue_timeout_seconds": float,
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
