"""Workspaces as Docker volumes, for the lifecycle kinds (delete) and `GET /v1/workspaces`
(sizes). A workspace is the volume `chaser.<account>.<workspace>`."""

from __future__ import annotations

import asyncio
import time

import structlog

from executors.docker import DockerHost, SandboxError
from executors.lifecycle import WorkspaceBackendError, WorkspaceBusy
from executors.sandbox_spec import ACCOUNT, ROLE, WORKSPACE, volume_name

log = structlog.get_logger("chaser.workspaces")

SIZES_TIMEOUT = 5.0
SIZES_FRESH = 5.0


class DockerWorkspaces:
    """Deletes workspaces' volumes and reports their sizes; connects to Docker on first use."""

    def __init__(self, docker: DockerHost | None = None) -> None:
        self._docker = docker or DockerHost()
        self._connected = False
        self._sizes: dict[str, int] = {}
        self._sizes_at = 0.0
        self._sizes_lock = asyncio.Lock()

    async def _host(self) -> DockerHost:
        if not self._connected:
            await self._docker.connect()
            self._connected = True
        return self._docker

    async def delete_workspace(self, account: str, workspace: str) -> None:
        """Remove the workspace's idle containers, then its volume; WorkspaceBusy while a live
        session's container holds it."""
        try:
            docker = await self._host()
            holders = await docker.managed(**{ACCOUNT: account, WORKSPACE: workspace})
            for found in holders:
                labels = found.get("Labels") or {}
                if labels.get(ROLE) == "session" and found.get("State") == "running":
                    session = labels.get("org.chaser.session")
                    raise WorkspaceBusy(
                        f"workspace {workspace} is held by live session {session};"
                        " terminate the session first"
                    )
            for found in holders:
                await docker.remove(found["Id"])
            await docker.remove_volume(volume_name(account, workspace))
        except SandboxError as exc:
            self._connected = False
            raise WorkspaceBackendError(f"deleting workspace {workspace}: {exc}") from exc
        log.info("workspace_volume_removed", account=account, workspace=workspace)

    async def sizes(self, account: str) -> dict[str, int]:
        """Bytes used by each of an account's workspaces, where Docker reports it ({} when
        Docker does not answer). `system df` walks every volume, so answers are cached a few
        seconds."""
        async with self._sizes_lock:
            if time.monotonic() - self._sizes_at > SIZES_FRESH:
                try:
                    docker = await self._host()
                    self._sizes = await asyncio.wait_for(docker.volume_sizes(), SIZES_TIMEOUT)
                except (SandboxError, TimeoutError) as exc:
                    self._connected = False
                    log.warning("workspace_sizes_unavailable", error=str(exc))
                    self._sizes = {}
                self._sizes_at = time.monotonic()
        prefix = volume_name(account, "")
        return {
            name.removeprefix(prefix): size
            for name, size in self._sizes.items()
            if name.startswith(prefix)
        }

    async def close(self) -> None:
        """Disconnect."""
        await self._docker.close()
        self._connected = False
