"""Self-hosted runners and workspace files: `GET /v1/runners`,
`PUT /v1/workspaces/{workspace}/archive` (a tar body extracted into the workspace) and
`GET /v1/workspaces/{workspace}/files/{path}` (a file's bytes, or a directory's entries)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

import msgspec
from litestar import Request, Response, Router, get, put
from litestar.di import Provide

from api.auth import Principal
from engine.errors import InvalidInput
from schemas.kinds import Name
from schemas.runners import RunnerPage, RunnerView

MAX_ARCHIVE_BYTES = 512 * 1024 * 1024
_name = msgspec.json.Decoder(Name)


@runtime_checkable
class WorkspaceFilesPort(Protocol):
    """Reads and writes workspace volumes (errors are the engine's: NotFound, InvalidInput,
    StoreUnavailable)."""

    async def read(self, account: str, workspace: str, path: str) -> bytes | list[dict[str, Any]]:
        """A file's bytes or a directory's entries."""

    async def upload(self, account: str, workspace: str, data: bytes) -> int:
        """Extract a tar into the workspace; the number of entries."""


ListRunners = Callable[[], Awaitable[list[RunnerView]]]
Recorder = Callable[[str, str], Awaitable[None]]


def _workspace(name: str) -> str:
    try:
        return _name.decode(msgspec.json.encode(name))
    except msgspec.ValidationError as exc:
        raise InvalidInput("workspace", "letters, digits, '_' and '-' (1 to 128)") from exc


@get("/v1/runners")
async def list_runners(who: Principal, runners: ListRunners) -> RunnerPage:
    """Every runner of a live `github` executor: labels, image, capacity, busy or idle."""
    return RunnerPage(items=await runners())


@put("/v1/workspaces/{workspace:str}/archive", request_max_body_size=MAX_ARCHIVE_BYTES)
async def upload_archive(
    workspace: str,
    request: Request[Any, Any, Any],
    who: Principal,
    files: WorkspaceFilesPort,
    record: Recorder,
) -> dict[str, Any]:
    """Extract a tar archive (the body) into the workspace, creating it when missing."""
    name = _workspace(workspace)
    data = await request.body()
    entries = await files.upload(who.account, name, data)
    await record(who.account, name)
    return {"workspace": name, "entries": entries, "bytes": len(data)}


@get("/v1/workspaces/{workspace:str}/files/{path:path}")
async def read_file(
    workspace: str, path: str, who: Principal, files: WorkspaceFilesPort
) -> Response[bytes]:
    """A file of the workspace (raw bytes), or a directory's entries (JSON)."""
    found = await files.read(who.account, _workspace(workspace), path)
    if isinstance(found, bytes):
        return Response(found, media_type="application/octet-stream")
    return Response(msgspec.json.encode({"entries": found}), media_type="application/json")


def runner_routes(runners: ListRunners, files: WorkspaceFilesPort, record: Recorder) -> Router:
    """The routes, bound to the deployment's runner board and workspace files."""
    return Router(
        path="/",
        route_handlers=[list_runners, upload_archive, read_file],
        dependencies={
            "runners": Provide(lambda: runners, use_cache=True, sync_to_thread=False),
            "files": Provide(lambda: files, use_cache=True, sync_to_thread=False),
            "record": Provide(lambda: record, use_cache=True, sync_to_thread=False),
        },
    )
