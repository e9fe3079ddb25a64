"""Files of a workspace volume, read and written through the Docker API: a helper container
is created (never started) with the volume mounted, and the daemon copies archives in and
out of it. Used by `PUT /v1/workspaces/{w}/archive` (upload a tar), `GET
/v1/workspaces/{w}/files/{path}`, and the `github` executor to read workflow files.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from typing import Any

import structlog

from engine.errors import InvalidInput, NotFound, StoreUnavailable
from executors.docker import ContainerGone, DockerHost, SandboxError, translated
from executors.sandbox_spec import ACCOUNT, MANAGED, ROLE, WORKSPACE, volume_name

log = structlog.get_logger("chaser.workspaces")

MOUNT = "/workspace"
MAX_FILE_BYTES = 8 * 1024 * 1024


class WorkspaceFileError(Exception):
    """Root of this module's errors (each is also the engine error the API maps)."""


class WorkspaceMissing(WorkspaceFileError, NotFound):
    """The workspace has no volume (it was never used, or was deleted)."""

    def __init__(self, workspace: str) -> None:
        NotFound.__init__(self, "workspace", workspace)


class FileMissing(WorkspaceFileError, NotFound):
    """No such file or directory in the workspace."""

    def __init__(self, path: str) -> None:
        NotFound.__init__(self, "file", path)


class PathRefused(WorkspaceFileError, InvalidInput):
    """A path leaves the workspace or names nothing there; a body is not a tar archive."""

    def __init__(self, field: str, reason: str) -> None:
        InvalidInput.__init__(self, field, reason)


class FilesUnavailable(WorkspaceFileError, StoreUnavailable):
    """Docker did not answer or refused."""


def clean_path(path: str) -> str:
    """A path relative to the workspace root, normalised; PathRefused when it escapes."""
    joined = posixpath.normpath(posixpath.join("/", path.lstrip("/")))
    if "\x00" in path:
        raise PathRefused("path", "a path cannot contain NUL")
    return joined.lstrip("/")


def _kind(member: tarfile.TarInfo) -> str:
    if member.isdir():
        return "dir"
    if member.isfile():
        return "file"
    if member.issym() or member.islnk():
        return "link"
    return "other"


class WorkspaceFiles:
    """Reads and writes workspace volumes; connects to Docker on first use."""

    def __init__(self, image: str, docker: DockerHost | None = None) -> None:
        self._image = image
        self._docker = docker or DockerHost()
        self._connected = False

    async def _host(self) -> DockerHost:
        if not self._connected:
            await self._docker.connect()
            self._connected = True
        return self._docker

    def connected(self) -> None:
        """The Docker host given is already connected (shared with its owner)."""
        self._connected = True

    async def close(self) -> None:
        """Disconnect."""
        await self._docker.close()
        self._connected = False

    async def _exists(self, docker: DockerHost, volume: str) -> bool:
        try:
            with translated(f"inspect volume {volume}"):
                await docker.api.volumes.get(volume)  # type: ignore[no-untyped-call]
        except ContainerGone:
            return False
        return True

    async def _helper(self, docker: DockerHost, account: str, workspace: str, ro: bool) -> Any:
        if not await docker.has_image(self._image):
            await docker.pull(self._image, _quiet)
        config: dict[str, Any] = {
            "Image": self._image,
            "Cmd": ["true"],
            "Labels": {MANAGED: "1", ROLE: "files", ACCOUNT: account, WORKSPACE: workspace},
            "HostConfig": {
                "Mounts": [
                    {
                        "Type": "volume",
                        "Source": volume_name(account, workspace),
                        "Target": MOUNT,
                        "ReadOnly": ro,
                    }
                ],
                "NetworkMode": "none",
            },
        }
        with translated("create a workspace helper"):
            return await docker.api.containers.create(config)

    async def read(self, account: str, workspace: str, path: str) -> bytes | list[dict[str, Any]]:
        """A file's bytes, or a directory's entries; WorkspaceMissing, PathRefused."""
        relative = clean_path(path)
        try:
            docker = await self._host()
            if not await self._exists(docker, volume_name(account, workspace)):
                raise WorkspaceMissing(workspace)
            helper = await self._helper(docker, account, workspace, ro=True)
            try:
                with translated(f"read {relative or '/'}"):
                    archive = await helper.get_archive(posixpath.join(MOUNT, relative))
            finally:
                await docker.remove(helper.id)
        except ContainerGone as exc:
            raise FileMissing(path) from exc
        except SandboxError as exc:
            self._connected = False
            raise FilesUnavailable(str(exc)) from exc
        with archive:
            return _content(archive, path)

    async def upload(self, account: str, workspace: str, data: bytes) -> int:
        """Extract a tar archive into the workspace (created when missing); files it has
        replace those of the same name. Returns how many entries it had."""
        try:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                count = len(archive.getmembers())
        except (tarfile.TarError, EOFError) as exc:
            raise PathRefused("body", f"not a tar archive: {exc}") from exc
        try:
            docker = await self._host()
            labels = {ACCOUNT: account, WORKSPACE: workspace}
            await docker.ensure_volume(volume_name(account, workspace), labels)
            helper = await self._helper(docker, account, workspace, ro=False)
            try:
                with translated(f"upload into {workspace}"):
                    await helper.put_archive(MOUNT, data)
            finally:
                await docker.remove(helper.id)
        except SandboxError as exc:
            self._connected = False
            raise FilesUnavailable(str(exc)) from exc
        log.info("workspace_uploaded", account=account, workspace=workspace, entries=count)
        return count


def _content(archive: tarfile.TarFile, path: str) -> bytes | list[dict[str, Any]]:
    members = archive.getmembers()
    if not members:
        raise PathRefused("path", f"{path}: nothing there")
    top = members[0]
    if top.isfile():
        handle = archive.extractfile(top)
        if top.size > MAX_FILE_BYTES or handle is None:
            raise PathRefused("path", f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return handle.read()
    if not top.isdir():
        raise PathRefused("path", f"{path}: not a regular file or directory")
    entries = []
    for member in members[1:]:
        rest = member.name[len(top.name) :].strip("/")
        if rest and "/" not in rest:
            entries.append({"name": rest, "type": _kind(member), "size": member.size})
    return sorted(entries, key=lambda e: str(e["name"]))


async def _quiet(line: str) -> None:
    log.info("workspace_helper_pull", progress=line)
