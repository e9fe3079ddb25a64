"""The Docker Engine as the sandboxes use it, through aiodocker.

SandboxError                 root of what this module raises (aiodocker's and aiohttp's
│                            exceptions are translated here and never leave it)
├── DockerUnavailable        the daemon did not answer
├── ImageUnavailable         an image is not here and could not be pulled
├── ContainerGone            the container is not there (removed, never started)
└── DockerFailed             any other refusal of the daemon
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from typing import Any

import aiodocker
import aiohttp
from aiodocker.execs import Exec
from aiodocker.stream import Stream

from executors.sandbox_spec import MANAGED, pull_progress

PING_TIMEOUT = 5.0
EXIT_POLL = 0.01
EXIT_WAIT = 5.0
CHANNELS = {1: "stdout", 2: "stderr"}


class SandboxError(Exception):
    """Root of the sandbox backend's errors."""


class DockerUnavailable(SandboxError):
    """The Docker daemon did not answer."""


class ImageUnavailable(SandboxError):
    """An image is missing locally and could not be pulled."""

    def __init__(self, image: str, reason: str) -> None:
        super().__init__(f"image {image} is not available: {reason}")
        self.image = image


class ContainerGone(SandboxError):
    """The container is not there."""


class DockerFailed(SandboxError):
    """The daemon refused a request."""


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn aiodocker's and aiohttp's errors into this module's."""
    try:
        yield
    except aiodocker.DockerError as exc:
        if exc.status == 900:
            raise DockerUnavailable(f"{what}: {exc.message}") from exc
        if exc.status == 404:
            raise ContainerGone(f"{what}: {exc.message}") from exc
        raise DockerFailed(f"{what}: {exc.message}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise DockerUnavailable(f"{what}: {exc!r}") from exc


class ExecOutput:
    """A running command's output stream and, once it ends, its exit code."""

    def __init__(self, exec_: Exec, stream: Stream, stdin: bytes | None) -> None:
        self._exec = exec_
        self._stream = stream
        # Input is written beside the output being read: a command that does not read all
        # of its input must not stall the reader.
        self._feeder = asyncio.create_task(_feed(stream, stdin)) if stdin is not None else None

    async def chunks(self) -> AsyncIterator[tuple[str, bytes]]:
        """(`stdout` | `stderr`, bytes) until the command's output ends."""
        while True:
            with translated("read output"):
                message = await self._stream.read_out()
            if message is None:
                return
            yield CHANNELS.get(message.stream, "stdout"), message.data

    async def exit_code(self) -> int:
        """The command's exit code (waits briefly for Docker to record it)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_WAIT
        while True:
            with translated("inspect exec"):
                info = await self._exec.inspect()
            if not info.get("Running") and info.get("ExitCode") is not None:
                return int(info["ExitCode"])
            if loop.time() > deadline:
                return -1
            await asyncio.sleep(EXIT_POLL)

    async def close(self) -> None:
        """Release the connection."""
        if self._feeder is not None:
            self._feeder.cancel()  # it ends by itself; never wait on it while being cancelled
        with contextlib.suppress(SandboxError, aiohttp.ClientError, OSError):
            await self._stream.close()


class DockerHost:
    """One connection to a Docker daemon (`DOCKER_HOST` or the local socket)."""

    def __init__(self, url: str | None = None) -> None:
        self._url = url
        self._docker: aiodocker.Docker | None = None

    @property
    def api(self) -> aiodocker.Docker:
        """The aiodocker client (after `connect`)."""
        if self._docker is None:
            raise DockerUnavailable("not connected")
        return self._docker

    async def connect(self) -> dict[str, Any]:
        """Connect and ask the daemon its version; DockerUnavailable when it does not answer."""
        try:
            self._docker = aiodocker.Docker(url=self._url)
        except ValueError as exc:
            raise DockerUnavailable(f"no Docker daemon found: {exc}") from exc
        try:
            with translated("ping"):
                version: dict[str, Any] = await asyncio.wait_for(
                    self._docker.version(), PING_TIMEOUT
                )
        except (TimeoutError, SandboxError) as exc:
            await self.close()
            raise DockerUnavailable(f"Docker did not answer: {exc}") from exc
        return version

    async def close(self) -> None:
        """Close the connection."""
        if self._docker is not None:
            with contextlib.suppress(Exception):
                await self._docker.close()
            self._docker = None

    async def has_image(self, image: str) -> bool:
        """Whether an image is present locally."""
        try:
            with translated(f"inspect {image}"):
                await self.api.images.inspect(image)
        except ContainerGone:
            return False
        return True

    async def pull(self, image: str, progress: Callable[[str], Awaitable[None]]) -> None:
        """Pull an image, reporting progress lines; ImageUnavailable when the pull fails."""
        seen: set[tuple[str, str]] = set()
        try:
            async for item in self.api.images.pull(image, stream=True):
                line = pull_progress(item, seen)
                if line is not None:
                    await progress(line)
        except aiodocker.DockerError as exc:
            raise ImageUnavailable(image, exc.message) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise DockerUnavailable(f"pull {image}: {exc!r}") from exc
        if not await self.has_image(image):
            raise ImageUnavailable(image, "the pull finished without the image")

    async def ensure_volume(self, name: str, labels: Mapping[str, str]) -> None:
        """Create a named volume unless it exists (Docker's create is idempotent)."""
        with translated(f"create volume {name}"):
            await self.api.volumes.create(  # type: ignore[no-untyped-call]
                {"Name": name, "Labels": {MANAGED: "1", **labels}, "Driver": "local"}
            )

    async def remove_volume(self, name: str) -> None:
        """Remove a volume; one already gone is fine."""
        with contextlib.suppress(ContainerGone), translated(f"remove volume {name}"):
            volume = await self.api.volumes.get(name)  # type: ignore[no-untyped-call]
            await volume.delete()

    async def run_container(self, name: str, config: dict[str, Any]) -> str:
        """Create and start a container; a leftover of the same name is replaced."""
        with translated(f"create {name}"):
            try:
                container = await self.api.containers.create(config, name=name)
            except aiodocker.DockerError as exc:
                if exc.status != 409:
                    raise
                await self.remove(name)
                container = await self.api.containers.create(config, name=name)
        with translated(f"start {name}"):
            try:
                await container.start()
            except aiodocker.DockerError:
                await self.remove(container.id)
                raise
        return container.id

    async def remove(self, container: str) -> None:
        """Kill and remove a container; one already gone is fine."""
        with contextlib.suppress(ContainerGone), translated(f"remove {container}"):
            await self.api.containers.container(container).delete(force=True, v=False)

    async def rename(self, container: str, name: str) -> None:
        """Give a container a new name."""
        with translated(f"rename {container}"):
            await self.api.containers.container(container).rename(name)

    async def running(self, container: str) -> bool:
        """Whether a container exists and runs."""
        try:
            with translated(f"inspect {container}"):
                info = await self.api.containers.container(container).show()
        except ContainerGone:
            return False
        return bool(info.get("State", {}).get("Running"))

    async def managed(self, **labels: str) -> list[dict[str, Any]]:
        """Every container this deployment created (optionally with more labels)."""
        wanted = [MANAGED + "=1", *(f"{k}={v}" for k, v in labels.items())]
        with translated("list containers"):
            found = await self.api.containers.list(all=True, filters={"label": wanted})
        fields = ("Id", "Names", "Labels", "State")
        return [{name: c[name] for name in fields if name in c} for c in found]

    async def start_exec(
        self,
        container: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        workdir: str | None = None,
        stdin: bytes | None = None,
    ) -> ExecOutput:
        """Start a command in a running container; its output streams from the result."""
        with translated(f"exec in {container}"):
            exec_ = await self.api.containers.container(container).exec(
                argv, stdin=stdin is not None, environment=dict(env or {}), workdir=workdir
            )
            stream = exec_.start(detach=False)
            await stream._init()
        return ExecOutput(exec_, stream, stdin)

    async def exec_detached(self, container: str, argv: list[str]) -> None:
        """Run a command in a container without waiting for it."""
        with translated(f"exec in {container}"):
            exec_ = await self.api.containers.container(container).exec(argv)
            await exec_.start(detach=True)

    async def volume_sizes(self) -> dict[str, int]:
        """Bytes used by each volume, where Docker reports it (`system df`)."""
        with translated("system df"):
            usage = await self.api._query_json("system/df")
        sizes: dict[str, int] = {}
        for volume in usage.get("Volumes") or []:
            size = (volume.get("UsageData") or {}).get("Size", -1)
            if isinstance(size, int) and size >= 0:
                sizes[volume["Name"]] = size
        return sizes


async def _feed(stream: Stream, data: bytes) -> None:
    """Write stdin, then close only our sending half so the command sees end of input
    (aiodocker's own `close` would end the whole connection, output included)."""
    with contextlib.suppress(RuntimeError, OSError, aiohttp.ClientError):
        if data:
            await stream.write_in(data)
        response = stream._resp
        connection = response.connection if response is not None else None
        transport = connection.transport if connection is not None else None
        if transport is not None and transport.can_write_eof():
            transport.write_eof()
