"""Sandbox policy: limits within the deployment's maxima, which jobs share a workspace, and the
dispatcher releasing jobs of one workspace one at a time (on the in-memory store)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from engine import decide
from engine.dispatcher import Dispatcher
from engine.errors import InvalidInput
from engine.memory import MemoryEventStore
from engine.projection import ReadModel
from engine.sandbox import check_input, limits_for, serial_key
from engine.service import JobService
from engine.settings import Settings, settings_from_env
from schemas.api import CreateJobRequest
from schemas.common import JobStatus
from schemas.kinds import validate_input
from schemas.state import JobState
from schemas.work import WorkItem

SETTINGS = Settings(sandbox_max_cpu=2.0, sandbox_max_memory_mb=1024, sandbox_max_pids=100)


def test_settings_come_from_the_environment() -> None:
    settings = settings_from_env(
        {
            "CHASER_DEFAULT_IMAGE": "node:20",
            "CHASER_SANDBOX_NETWORK": "bridge",
            "CHASER_SANDBOX_MAX_MEMORY_MB": "2048",
            "CHASER_SANDBOX_WARM_CONTAINERS": "0",
        }
    )
    assert settings.default_image == "node:20" and settings.sandbox_network == "bridge"
    assert settings.sandbox_max_memory_mb == 2048 and settings.sandbox_warm_containers == 0
    assert "sandbox" in Settings().executor_families


def test_limits_default_per_kind_of_sandbox() -> None:
    ephemeral = limits_for(SETTINGS, ephemeral=True)
    assert ephemeral.network == "none"
    assert (ephemeral.cpu, ephemeral.memory_mb, ephemeral.pids) == (1.0, 512, 100)
    workspace = limits_for(SETTINGS, ephemeral=False, memory_mb=64, network="none")
    assert workspace.network == "none" and workspace.memory_mb == 64
    assert limits_for(SETTINGS, ephemeral=False).network == "bridge"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"cpu": 2.5}, "input.cpu"),
        ({"memory_mb": 2048}, "input.memory_mb"),
        ({"pids": 101}, "input.pids"),
        ({"env": {"": "x"}}, "input.env"),
        ({"env": {"A": "x\x00"}}, "input.env.A"),
    ],
)
def test_inputs_beyond_the_maxima_name_their_field(extra: dict[str, Any], field: str) -> None:
    spec = validate_input("sandbox.exec", {"workspace": "w", "command": "true", **extra})
    with pytest.raises(InvalidInput) as refused:
        check_input(SETTINGS, "sandbox.exec", spec)
    assert refused.value.field == field


def test_pipeline_step_environments_are_checked() -> None:
    spec = validate_input(
        "pipeline.run",
        {"workspace": "w", "steps": [{"command": "a"}, {"command": "b", "env": {"X=": "1"}}]},
    )
    with pytest.raises(InvalidInput) as refused:
        check_input(SETTINGS, "pipeline.run", spec)
    assert refused.value.field == "input.steps.1.env"
    check_input(SETTINGS, "system.echo", validate_input("system.echo", {}))


def job(kind: str, **job_input: Any) -> JobState:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    return JobState(
        id="job_1",
        account="acme",
        kind=kind,
        input=job_input,
        status=JobStatus.QUEUED,
        attempt=1,
        max_attempts=1,
        run_at=None,
        idempotency_key=None,
        created_at=at,
        updated_at=at,
    )


def test_serial_keys() -> None:
    sessions = {("acme", "ses_ws"): "proj", ("acme", "ses_eph"): None}

    def workspace_of(account: str, session_id: str) -> str | None:
        return sessions.get((account, session_id))

    assert serial_key(job("sandbox.exec", workspace="proj"), workspace_of) == "workspace:proj"
    assert serial_key(job("pipeline.run", workspace="proj"), workspace_of) == "workspace:proj"
    assert serial_key(job("workspace.delete", workspace="proj"), workspace_of) == "workspace:proj"
    assert serial_key(job("sandbox.exec", session_id="ses_ws"), workspace_of) == "workspace:proj"
    assert serial_key(job("sandbox.exec", session_id="ses_eph"), workspace_of) == "session:ses_eph"
    assert serial_key(job("sandbox.exec", ephemeral=True, image="x"), workspace_of) is None
    assert serial_key(job("system.echo", workspace="proj"), workspace_of) is None


class Queue:
    """A work queue that records what it is given."""

    def __init__(self) -> None:
        self.released: list[str] = []

    async def release(self, item: WorkItem) -> None:
        self.released.append(item.state.id)


async def until(check: Any, timeout: float = 2.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def test_dispatcher_releases_one_job_per_workspace_at_a_time() -> None:
    store = MemoryEventStore(partitions=1)
    read = ReadModel(store)
    service = JobService(store, read)
    queue = Queue()
    dispatcher = Dispatcher(service, queue, default_limit=16)
    await read.start()
    await dispatcher.start()

    async def create(**job_input: Any) -> str:
        request = CreateJobRequest(kind="sandbox.exec", input=job_input)
        state, _ = await service.create("acme", "test", request)
        return state.id

    try:
        first = await create(workspace="w", command="1")
        second = await create(workspace="w", command="2")
        other = await create(workspace="v", command="3")
        third = await create(workspace="w", command="4")
        await until(lambda: len(queue.released) == 2)
        await asyncio.sleep(0.05)
        assert queue.released == [first, other]

        state = await service.load("acme", first)
        started = decide.start(state, attempt=1, executor_id="x", stamp=service.stamp("x"))
        rec = await store.append(started, expected_seq=state.seq)
        await asyncio.sleep(0.05)
        assert queue.released == [first, other]  # running still holds the workspace
        state = await service.load("acme", first)
        assert state.seq == rec.seq
        done = decide.succeed(state, service.stamp("x"), None)
        await store.append(done, expected_seq=state.seq)
        await until(lambda: len(queue.released) == 3)
        assert queue.released == [first, other, second]
        await asyncio.sleep(0.05)
        assert third not in queue.released
    finally:
        await dispatcher.stop()
        await read.stop()
