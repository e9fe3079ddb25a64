"""The containers one sandbox executor keeps: a warm container per workspace it serves, a pool
of fresh containers per ephemeral spec in demand, and the reaper of orphans.

Container model. A workspace's container runs a keeper as its main process and each job is an
`exec` into it (~50-90 ms instead of ~300 ms for a fresh container); it is this executor's
alone, so an executor that dies takes nothing shared with it, and it is removed after
`sandbox_idle_seconds` unused. An ephemeral job takes a never-used container from the warm
pool of its spec (image, limits, network), which is refilled behind it; the container is
removed after the job. The reaper removes containers whose executor process is dead (on this
host) and containers of sessions that have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import structlog

from engine.settings import Settings
from executors.docker import DockerHost, SandboxError
from executors.sandbox_spec import (
    ACCOUNT,
    ATTEMPT,
    JOB,
    ROLE,
    SESSION,
    WORKSPACE,
    ContainerSpec,
    Owner,
    container_config,
    is_orphan,
)

log = structlog.get_logger("chaser.sandbox")

Progress = Callable[[str], Awaitable[None]]
SessionLive = Callable[[str, str], bool | None]
MAINTAIN_SECONDS = 5.0
STOP_WAIT = 10.0


def process_start(pid: int) -> str:
    """When a process started (clock ticks since boot, from /proc), '' when unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[-1].split()[19]


def this_owner() -> Owner:
    """This process as the owner of the containers it creates."""
    pid = os.getpid()
    return Owner(
        host=socket.gethostname(), pid=pid, started=process_start(pid), instance=os.urandom(4).hex()
    )


def owner_alive(owner: Owner) -> bool | None:
    """Whether an owner process still runs; None when it is on another host."""
    if owner.host != socket.gethostname():
        return None
    if owner.started:
        return process_start(owner.pid) == owner.started
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Box:
    """A running container this executor uses."""

    def __init__(self, container: str, name: str, spec: ContainerSpec) -> None:
        self.id = container
        self.name = name
        self.spec = spec
        self.last_used = time.monotonic()
        self.busy = 0


class Containers:
    """Workspace containers, warm pools and the reaper of one executor process."""

    def __init__(self, docker: DockerHost, settings: Settings, owner: Owner) -> None:
        self._docker = docker
        self._settings = settings
        self.owner = owner
        self._workspaces: dict[tuple[str, str], Box] = {}
        self._warm: dict[ContainerSpec, list[Box]] = {}
        self._demand: dict[ContainerSpec, float] = {}
        self._refilling: set[ContainerSpec] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._maintainer: asyncio.Task[None] | None = None
        self._session_live: SessionLive = lambda account, session: None
        self._keep: ContainerSpec | None = None
        self._counter = 0
        self._stopping = False

    async def start(self, session_live: SessionLive, prewarm: ContainerSpec | None) -> None:
        """Reap orphans now, pre-warm the default spec, then maintain every few seconds."""
        self._session_live = session_live
        await self.reap()
        if prewarm is not None and await self._docker.has_image(prewarm.image):
            self._keep = prewarm
            self._demand[prewarm] = time.monotonic()
            self._refill_soon(prewarm)
        self._maintainer = asyncio.create_task(self._maintain(), name="sandbox-maintain")

    async def stop(self) -> None:
        """Remove this executor's workspace and warm containers (sessions stay up)."""
        self._stopping = True
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=STOP_WAIT)
        boxes = [*self._workspaces.values(), *(b for pool in self._warm.values() for b in pool)]
        self._workspaces.clear()
        self._warm.clear()
        await asyncio.gather(*(self._remove(box.id) for box in boxes))

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run background work that `stop` waits for."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ensure_image(self, image: str, progress: Progress) -> None:
        """Pull an image that is not here, reporting progress; ImageUnavailable on failure."""
        if await self._docker.has_image(image):
            return
        await progress(f"pulling {image}")
        await self._docker.pull(image, progress)
        await progress(f"pulled {image}")

    async def workspace_box(
        self, account: str, workspace: str, spec: ContainerSpec, progress: Progress
    ) -> Box:
        """This executor's running container on a workspace with exactly this spec."""
        key = (account, workspace)
        box = self._workspaces.get(key)
        if box is not None and (box.spec != spec or not await self._docker.running(box.id)):
            self._workspaces.pop(key, None)
            await self._remove(box.id)
            box = None
        if box is None:
            await self.ensure_image(spec.image, progress)
            assert spec.volume is not None
            await self._docker.ensure_volume(spec.volume, {ACCOUNT: account, WORKSPACE: workspace})
            name = f"chaser-ws.{account}.{workspace}.{self.owner.instance}"
            labels = {ROLE: "workspace", ACCOUNT: account, WORKSPACE: workspace}
            box = await self._create(name, spec, labels)
            self._workspaces[key] = box
        box.last_used = time.monotonic()
        return box

    async def ephemeral_box(
        self, account: str, job_id: str, attempt: int, spec: ContainerSpec, progress: Progress
    ) -> Box:
        """A never-used container for one job: from the warm pool, else created now."""
        name = f"chaser-job.{account}.{job_id}.{attempt}"
        self._demand[spec] = time.monotonic()
        pool = self._warm.get(spec)
        box = pool.pop() if pool else None
        if box is not None:
            self._refill_soon(spec)
            try:
                await self._docker.rename(box.id, name)
                box.name = name
            except SandboxError as exc:
                log.warning("sandbox_rename_failed", container=box.name, error=str(exc))
            except asyncio.CancelledError:
                self.discard(box)
                raise
            return box
        await self.ensure_image(spec.image, progress)
        labels = {ROLE: "ephemeral", ACCOUNT: account, JOB: job_id, ATTEMPT: str(attempt)}
        box = await self._create(name, spec, labels)
        self._refill_soon(spec)
        return box

    async def session_container(
        self, account: str, session_id: str, workspace: str | None, spec: ContainerSpec
    ) -> tuple[str, str]:
        """Start a live session's container; (id, name)."""
        await self.ensure_image(spec.image, _quiet)
        labels = {ROLE: "session", ACCOUNT: account, SESSION: session_id}
        if workspace is not None:
            assert spec.volume is not None
            labels[WORKSPACE] = workspace
            await self._docker.ensure_volume(spec.volume, {ACCOUNT: account, WORKSPACE: workspace})
        name = f"chaser-ses.{account}.{session_id}"
        container = await self._docker.run_container(name, container_config(spec, labels))
        return container, name

    def discard(self, box: Box) -> None:
        """A finished ephemeral container: remove it in the background."""
        self.spawn(self._remove(box.id))

    async def _create(self, name: str, spec: ContainerSpec, labels: dict[str, str]) -> Box:
        config = container_config(spec, {**labels, **self.owner.labels()})
        try:
            container = await self._docker.run_container(name, config)
        except asyncio.CancelledError:
            # Whatever Docker made of it is ours and no one else would reap it.
            self.spawn(self._remove(name))
            raise
        log.info("sandbox_container_started", container=name, image=spec.image)
        return Box(container, name, spec)

    async def _remove(self, container: str) -> None:
        try:
            await self._docker.remove(container)
        except SandboxError as exc:
            log.warning("sandbox_remove_failed", container=container, error=str(exc))

    def _refill_soon(self, spec: ContainerSpec) -> None:
        if self._settings.sandbox_warm_containers <= 0 or spec in self._refilling:
            return
        self._refilling.add(spec)
        self.spawn(self._refill(spec))

    async def _refill(self, spec: ContainerSpec) -> None:
        try:
            pool = self._warm.setdefault(spec, [])
            target = self._settings.sandbox_warm_containers
            # The pool may be expired meanwhile: then stop filling it.
            while len(pool) < target and not self._stopping and self._warm.get(spec) is pool:
                self._counter += 1
                name = f"chaser-warm.{self.owner.instance}.{self._counter}"
                pool.append(await self._create(name, spec, {ROLE: "warm"}))
        except SandboxError as exc:
            log.warning("sandbox_warm_failed", image=spec.image, error=str(exc))
        finally:
            self._refilling.discard(spec)

    async def _maintain(self) -> None:
        while True:
            await asyncio.sleep(MAINTAIN_SECONDS)
            try:
                await self.reap()
                await self._expire(time.monotonic() - self._settings.sandbox_idle_seconds)
            except SandboxError as exc:
                log.warning("sandbox_maintenance_failed", error=str(exc))

    async def reap(self) -> int:
        """Remove managed containers whose owner is dead or whose session has ended."""
        reaped = 0
        for found in await self._docker.managed():
            labels: dict[str, str] = found.get("Labels") or {}
            orphan = is_orphan(
                labels, me=self.owner, alive=owner_alive, session_live=self._session_live
            )
            if orphan:
                await self._remove(found["Id"])
                names = found.get("Names") or ["?"]
                log.info("sandbox_orphan_reaped", container=names[0], role=labels.get(ROLE))
                reaped += 1
        return reaped

    async def _expire(self, idle_before: float) -> None:
        """Remove workspace containers and warm pools unused since `idle_before`."""
        for key, box in list(self._workspaces.items()):
            if box.busy == 0 and box.last_used < idle_before:
                self._workspaces.pop(key, None)
                await self._remove(box.id)
        for spec, used in list(self._demand.items()):
            if spec != self._keep and used < idle_before:
                self._demand.pop(spec, None)
                for box in self._warm.pop(spec, []):
                    await self._remove(box.id)


async def _quiet(line: str) -> None:
    log.info("sandbox_image_pull", progress=line)
