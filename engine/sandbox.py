"""Sandbox policy: resource limits within the deployment's maxima, and which jobs share a
workspace and so run one at a time. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec

from engine.errors import InvalidInput
from engine.settings import Settings
from schemas.kinds import Input, PipelineRunInput, SandboxExecInput
from schemas.state import JobState

# Kinds whose jobs on one workspace (or one session) run one at a time, in queue order.
SERIAL_KINDS: frozenset[str] = frozenset({"sandbox.exec", "pipeline.run", "workspace.delete"})


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What a sandbox container is allowed: CPUs, memory, processes, network."""

    cpu: float
    memory_mb: int
    pids: int
    network: str


def limits_for(
    settings: Settings,
    *,
    ephemeral: bool,
    cpu: float | None = None,
    memory_mb: int | None = None,
    pids: int | None = None,
    network: str | None = None,
) -> Limits:
    """The limits a sandbox runs with: the request's, else the deployment's defaults."""
    default_network = settings.sandbox_network if ephemeral else settings.sandbox_workspace_network
    return Limits(
        cpu=cpu if cpu is not None else min(settings.sandbox_cpu, settings.sandbox_max_cpu),
        memory_mb=memory_mb
        if memory_mb is not None
        else min(settings.sandbox_memory_mb, settings.sandbox_max_memory_mb),
        pids=pids if pids is not None else min(settings.sandbox_pids, settings.sandbox_max_pids),
        network=network or default_network,
    )


def limit_problems(
    settings: Settings,
    *,
    cpu: float | None,
    memory_mb: int | None,
    pids: int | None,
    prefix: str = "input",
) -> list[InvalidInput]:
    """Each requested limit above the deployment's maximum, as an error naming its field."""
    found: list[InvalidInput] = []
    checks = (
        ("cpu", cpu, settings.sandbox_max_cpu),
        ("memory_mb", memory_mb, settings.sandbox_max_memory_mb),
        ("pids", pids, settings.sandbox_max_pids),
    )
    for name, value, maximum in checks:
        if value is not None and value > maximum:
            found.append(
                InvalidInput(f"{prefix}.{name}", f"at most {maximum:g} in this deployment")
            )
    return found


def env_problem(env: Mapping[str, str], field: str) -> InvalidInput | None:
    """Why an environment is not passable to a process, or None."""
    for name, value in env.items():
        if not name or "=" in name or "\x00" in name:
            return InvalidInput(field, f"{name!r} is not a valid environment variable name")
        if "\x00" in value:
            return InvalidInput(f"{field}.{name}", "values cannot contain NUL")
    return None


def check_input(settings: Settings, kind: str, spec: Input) -> None:
    """Refuse a sandbox job's input this deployment cannot honour; raises InvalidInput."""
    problems: list[InvalidInput | None] = []
    if isinstance(spec, SandboxExecInput):
        problems += limit_problems(settings, cpu=spec.cpu, memory_mb=spec.memory_mb, pids=spec.pids)
        problems.append(env_problem(spec.env, "input.env"))
        if spec.workdir is not None and "\x00" in spec.workdir:
            problems.append(InvalidInput("input.workdir", "cannot contain NUL"))
    elif isinstance(spec, PipelineRunInput):
        problems.append(env_problem(spec.env, "input.env"))
        problems += [
            env_problem(step.env, f"input.steps.{index}.env")
            for index, step in enumerate(spec.steps)
        ]
    for problem in problems:
        if problem is not None:
            raise problem


def serial_key(job: JobState, session_workspace: Callable[[str, str], str | None]) -> str | None:
    """What a job must have to itself while it runs: its workspace, else its session (None
    when it shares nothing). `session_workspace(account, session_id)` names a session's
    workspace when it has one."""
    if job.kind not in SERIAL_KINDS:
        return None
    workspace = job.input.get("workspace")
    session = job.input.get("session_id")
    if isinstance(session, str):
        workspace = session_workspace(job.account, session) or workspace
        if not isinstance(workspace, str):
            return f"session:{session}"
    return f"workspace:{workspace}" if isinstance(workspace, str) else None
