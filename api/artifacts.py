"""`GET /v1/jobs/{id}/artifacts/{name}`: a job's stored artifact (e.g. a scrape's screenshot)."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State

from api.auth import Principal
from engine.artifacts import ArtifactStore
from engine.errors import NotFound
from engine.service import JobService


@get("/v1/jobs/{job_id:str}/artifacts/{name:str}")
async def get_artifact(job_id: str, name: str, state: State, who: Principal) -> Response[bytes]:
    """An artifact of one of the account's jobs (another account's job answers 404)."""
    service: JobService = state.deps.service
    await service.catch_up(who.account)
    await service.get(who.account, job_id)
    store: ArtifactStore | None = state.deps.artifacts
    found = await store.get(who.account, job_id, name) if store is not None else None
    if found is None:
        raise NotFound("artifact", f"{job_id}/{name}")
    data, content_type = found
    return Response(
        data,
        media_type=content_type,
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


ROUTES = [get_artifact]
