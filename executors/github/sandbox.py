"""The containers of one `github.runner` attempt, on Docker through the sandbox primitives.

A job gets a volume of its own mounted at `/github` (workspace, home, event payload, file
commands, temp), a copy of the account's workspace in `/github/workspace` (the workspace
volume is mounted read-only at `/chaser/source` only to copy it: jobs never change it and
several may read it at once), and a container of the runner's (or `container:`) image
kept alive by the sandbox keeper; each step is an `exec` into it. `services:` run as
containers on a network of the job's own, reachable by their ids. Everything is labelled
with the executor process as owner, so the sandbox reaper removes it if that process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import tarfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from engine.sandbox import Limits
from executors.docker import ContainerGone, DockerHost, SandboxError, translated
from executors.sandbox_exec import CommandRun, Sink, run_command
from executors.sandbox_spec import (
    ACCOUNT,
    ATTEMPT,
    JOB,
    MANAGED,
    ROLE,
    ContainerSpec,
    Owner,
    container_config,
    volume_name,
)

log = structlog.get_logger("chaser.github")

ROLE_JOB = "github"
ROLE_SERVICE = "github-service"
SOURCE = "/chaser/source"
PREPARE = (
    "mkdir -p /github/workspace /github/home /github/workflow /github/file_commands"
    " /github/runner_temp /github/actions && cp -a /chaser/source/. /github/workspace/"
    " && chmod -R u+w /github/workspace; command -v bash >/dev/null 2>&1 && echo bash || echo sh"
)
Progress = Callable[[str], Awaitable[None]]


@dataclass
class Service:
    """A `services:` sidecar to start."""

    id: str
    image: str
    env: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)


@dataclass
class Placed:
    """Where the job runs, as the `job` context and the result report it."""

    container: str = ""
    network: str = ""
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    has_bash: bool = False
    image_path: str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def tar_of(files: Mapping[str, bytes], mode: int = 0o644) -> bytes:
    """A tar archive of named files (paths relative to where it is put), with entries for
    their parent directories."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        made: set[str] = set()
        for name in files:
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                directory = "/".join(parts[:depth])
                if directory not in made:
                    made.add(directory)
                    info = tarfile.TarInfo(directory)
                    info.type = tarfile.DIRTYPE
                    info.mode = 0o755
                    archive.addfile(info)
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = mode
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def files_of(archive: tarfile.TarFile, limit: int) -> dict[str, bytes]:
    """Regular files of an archive by their name below its top directory (at most
    `limit` bytes each)."""
    found: dict[str, bytes] = {}
    for member in archive.getmembers():
        if not member.isfile():
            continue
        handle = archive.extractfile(member)
        if handle is None:
            continue
        name = member.name.split("/", 1)[1] if "/" in member.name else member.name
        found[name] = handle.read(limit)
    return found


class JobSandbox:
    """The volume, network, service and job containers of one attempt."""

    def __init__(
        self, docker: DockerHost, owner: Owner, *, account: str, job_id: str, attempt: int
    ) -> None:
        self._docker = docker
        self._owner = owner
        self.account = account
        self.job_id = job_id
        self.attempt = attempt
        self.base = f"chaser-gh.{account}.{job_id}.{attempt}"
        self.volume = self.base
        self.placed = Placed()
        self._containers: list[str] = []
        self._network_id: str | None = None
        self._steps = 0

    def labels(self, role: str) -> dict[str, str]:
        """Labels of everything this attempt creates."""
        return {
            ROLE: role,
            ACCOUNT: self.account,
            JOB: self.job_id,
            ATTEMPT: str(self.attempt),
            **self._owner.labels(),
        }

    async def ensure_image(self, image: str, progress: Progress) -> None:
        """Pull an image that is not here (ImageUnavailable when that fails)."""
        if not await self._docker.has_image(image):
            await progress(f"pulling {image}")
            await self._docker.pull(image, progress)

    async def start(
        self,
        *,
        image: str,
        workspace: str,
        limits: Limits,
        env: Mapping[str, str],
        services: list[Service],
        progress: Progress,
    ) -> Placed:
        """Create the job volume, network and services, then the job container with the
        workspace copied in."""
        await self.ensure_image(image, progress)
        await self._docker.ensure_volume(self.volume, self.labels(ROLE_JOB))
        network = limits.network
        if services:
            network = await self._network()
            await self._services(services, network, limits, progress)
        spec = ContainerSpec.of(image, limits)
        config = container_config(spec, self.labels(ROLE_JOB))
        source = volume_name(self.account, workspace)
        config["HostConfig"]["Mounts"] = [
            {"Type": "volume", "Source": source, "Target": SOURCE, "ReadOnly": True},
            {"Type": "volume", "Source": self.volume, "Target": "/github"},
        ]
        config["HostConfig"]["NetworkMode"] = network
        config["NetworkDisabled"] = network == "none"
        config["WorkingDir"] = "/github/workspace"
        config["Env"] = [f"{k}={val}" for k, val in env.items()]
        container = await self._docker.run_container(self.base, config)
        self._containers.append(container)
        self.placed.container = container
        self.placed.network = network if services else ""
        await self._prepare(image)
        return self.placed

    async def _prepare(self, image: str) -> None:
        run = await self.run(["/bin/sh", "-c", PREPARE], env={}, workdir="/", timeout=600)
        if run.exit_code != 0:
            raise SandboxError(f"preparing the workspace failed: {run.combined.text()[-500:]}")
        self.placed.has_bash = run.stdout.text().strip().endswith("bash")
        with translated(f"inspect {image}"):
            info = await self._docker.api.images.inspect(image)
        for item in (info.get("Config") or {}).get("Env") or []:
            if item.startswith("PATH="):
                self.placed.image_path = item[5:]

    async def _network(self) -> str:
        with translated(f"create network {self.base}"):
            created = await self._docker.api.networks.create(
                {"Name": self.base, "Labels": {MANAGED: "1", **self.labels(ROLE_JOB)}}
            )
        self._network_id = created.id
        return self.base

    async def _services(
        self, services: list[Service], network: str, limits: Limits, progress: Progress
    ) -> None:
        for service in services:
            await self.ensure_image(service.image, progress)
            spec = ContainerSpec.of(
                service.image, Limits(**{**_limits(limits), "network": network})
            )
            config = container_config(spec, self.labels(ROLE_SERVICE))
            # A service runs its image's own entrypoint and command, like `docker run`.
            del config["Entrypoint"], config["Cmd"]
            config["Env"] = [f"{k}={val}" for k, val in service.env.items()]
            config["HostConfig"]["CapDrop"] = []
            config["NetworkingConfig"] = {"EndpointsConfig": {network: {"Aliases": [service.id]}}}
            name = f"{self.base}.{service.id}"
            container = await self._docker.run_container(name, config)
            self._containers.append(container)
            self.placed.services[service.id] = {
                "id": container,
                "network": self._network_id or network,
                "ports": {},
            }
            await progress(f"service {service.id} ({service.image}) started")

    async def run(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str],
        workdir: str,
        timeout: float,
        sink: Sink | None = None,
        tail_bytes: int = 65536,
    ) -> CommandRun:
        """Run a command in the job container (exit 124 on timeout; killed on cancel)."""
        return await run_command(
            self._docker,
            self.placed.container,
            argv,
            env=env,
            stdin=None,
            timeout=timeout,
            tail_bytes=tail_bytes,
            sink=sink or _discard,
            workdir=workdir,
        )

    async def image_command(self, image: str, entrypoint: str, args: list[str]) -> list[str]:
        """The argv a container of `image` runs: the entrypoint (given or the image's) and
        the arguments (given or the image's command)."""
        with translated(f"inspect {image}"):
            info = await self._docker.api.images.inspect(image)
        config = info.get("Config") or {}
        head = [entrypoint] if entrypoint else list(config.get("Entrypoint") or [])
        tail = args if (args or entrypoint) else list(config.get("Cmd") or [])
        return head + tail

    async def run_image(
        self,
        image: str,
        argv: list[str],
        *,
        env: Mapping[str, str],
        timeout: float,
        sink: Sink,
        limits: Limits,
        progress: Progress,
    ) -> CommandRun:
        """Run a command in a fresh container of another image (a `docker://` step) that
        shares the job's `/github` volume and network; removed afterwards."""
        await self.ensure_image(image, progress)
        network = self.placed.network or limits.network
        spec = ContainerSpec.of(image, Limits(**{**_limits(limits), "network": network}))
        config = container_config(spec, self.labels(ROLE_JOB))
        config["HostConfig"]["Mounts"] = [
            {"Type": "volume", "Source": self.volume, "Target": "/github"}
        ]
        config["WorkingDir"] = "/github/workspace"
        self._steps += 1
        name = f"{self.base}.step{self._steps}"
        container = await self._docker.run_container(name, config)
        try:
            return await run_command(
                self._docker,
                container,
                argv,
                env=env,
                stdin=None,
                timeout=timeout,
                tail_bytes=65536,
                sink=sink,
                workdir="/github/workspace",
            )
        finally:
            await _quietly(self._docker.remove(container), "remove", name)

    async def put_files(
        self, directory: str, files: Mapping[str, bytes], mode: int = 0o644
    ) -> None:
        """Write files into a directory of the job container."""
        container = self._docker.api.containers.container(self.placed.container)
        with translated(f"write into {directory}"):
            await container.put_archive(directory, tar_of(files, mode))  # type: ignore[no-untyped-call]

    async def get_files(self, path: str, limit: int = 1 << 20) -> dict[str, bytes]:
        """The regular files below a path of the job container ({} when it is missing)."""
        container = self._docker.api.containers.container(self.placed.container)
        try:
            with translated(f"read {path}"):
                archive = await container.get_archive(path)
        except ContainerGone:
            return {}
        with archive:
            return files_of(archive, limit)

    async def close(self) -> None:
        """Remove the containers, the network and the job volume (errors are logged)."""
        for container in reversed(self._containers):
            await _quietly(self._docker.remove(container), "remove", container)
        if self._network_id is not None:
            await _quietly(self._remove_network(), "remove network", self.base)
        await _quietly(self._docker.remove_volume(self.volume), "remove volume", self.volume)

    async def _remove_network(self) -> None:
        with translated(f"remove network {self.base}"):
            network = await self._docker.api.networks.get(self.base)
            await network.delete()


def _limits(limits: Limits) -> dict[str, Any]:
    return {"cpu": limits.cpu, "memory_mb": limits.memory_mb, "pids": limits.pids}


async def _quietly(work: Awaitable[Any], what: str, target: str) -> None:
    try:
        await asyncio.shield(work)
    except (SandboxError, OSError) as exc:
        log.warning("github_cleanup_failed", action=what, target=target, error=str(exc))


async def _discard(channel: str, data: bytes) -> None:
    del channel, data


async def remove_quietly(sandbox: JobSandbox) -> None:
    """Close a sandbox, surviving cancellation of the caller."""
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.shield(sandbox.close())
