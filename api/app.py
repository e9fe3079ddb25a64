"""The REST API: the six job endpoints of the product document, plus health, readiness, metrics."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from api.artifacts import ROUTES as ARTIFACT_ROUTES
from api.auth import Principal, principal
from api.logs import ROUTES as LOG_ROUTES
from api.problems import HANDLERS, problem
from api.sessions import ROUTES as SESSION_ROUTES
from engine.accounts import KeyRing
from engine.aggregates import SessionService
from engine.artifacts import ArtifactStore
from engine.errors import InvalidInput
from engine.joblogs import JobLogs
from engine.metrics import Metrics
from engine.projection import ListFilter, decode_cursor, encode_cursor
from engine.registry import ExecutorRegistry
from engine.service import JobService, validation_problem
from schemas.api import CreateJobRequest, JobPage, JobResource, KindList, KindView
from schemas.common import JobStatus
from schemas.kinds import KINDS, input_schema

_decode_create = msgspec.json.Decoder(CreateJobRequest).decode
JSON = "application/json"
MAX_LIMIT = 500


async def _no_sizes(account: str) -> dict[str, int]:
    return {}


@dataclass
class ApiDeps:
    """What the API needs from the rest of the process."""

    service: JobService
    keys: KeyRing
    registry: ExecutorRegistry | None = None
    metrics: Metrics = field(default_factory=Metrics)
    ready: Callable[[], Awaitable[str | None]] | None = None
    queue_depth: Callable[[], dict[str, int]] = dict
    sessions: SessionService | None = None
    workspace_sizes: Callable[[str], Awaitable[dict[str, int]]] = _no_sizes
    extra_routes: list[Any] = field(default_factory=list)
    logs: JobLogs | None = None
    artifacts: ArtifactStore | None = None


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(msgspec.json.encode(body), status_code=status, media_type=JSON, headers=headers)


@post("/v1/jobs", status_code=201)
async def create_job(
    request: Request[Any, Any, Any], state: State, who: Principal
) -> Response[bytes]:
    """Create a job."""
    raw = await request.body()
    try:
        body = _decode_create(raw)
    except msgspec.ValidationError as exc:
        raise validation_problem(exc, "") from exc
    except msgspec.DecodeError as exc:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
    job, created = await state.deps.service.create(who.account, who.actor, body)
    return _json(
        JobResource.of(job),
        201 if created else 200,
        headers={"Location": f"/v1/jobs/{job.id}"},
    )


def _filter(params: dict[str, list[str]]) -> ListFilter:
    def times(name: str) -> datetime | None:
        values = params.get(name)
        if not values:
            return None
        try:
            return msgspec.convert(values[-1], datetime)
        except msgspec.ValidationError as exc:
            raise InvalidInput(name, "not an RFC 3339 timestamp") from exc

    statuses = _many(params, "status")
    for value in statuses or ():
        if value not in JobStatus.__members__.values():
            raise InvalidInput("status", f"{value!r} is not one of {', '.join(JobStatus)}")
    return ListFilter(
        status=frozenset(JobStatus(s) for s in statuses) if statuses else None,
        kind=frozenset(_many(params, "kind") or ()) or None,
        created_after=times("created_after"),
        created_before=times("created_before"),
    )


def _many(params: dict[str, list[str]], name: str) -> list[str] | None:
    values = [v for raw in params.get(name, []) for v in raw.split(",") if v]
    return values or None


def _limit(params: dict[str, list[str]]) -> int:
    raw = params.get("limit", ["50"])[-1]
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise InvalidInput("limit", f"an integer from 1 to {MAX_LIMIT}")
    return int(raw)


@get("/v1/jobs")
async def list_jobs(request: Request[Any, Any, Any], state: State, who: Principal) -> JobPage:
    """List jobs, newest first, with filters and cursor pagination."""
    params = {k: request.query_params.getall(k) for k in request.query_params}
    unknown = set(params) - {"status", "kind", "created_after", "created_before", "limit", "cursor"}
    if unknown:
        raise InvalidInput(sorted(unknown)[0], "unknown query parameter")
    flt = _filter(params)
    limit = _limit(params)
    cursor = decode_cursor(params["cursor"][-1]) if params.get("cursor") else None
    service: JobService = state.deps.service
    await service.catch_up(who.account)
    jobs, next_position = service.read_model.page(who.account, flt, limit=limit, cursor=cursor)
    return JobPage(
        items=[JobResource.of(j) for j in jobs],
        next_cursor=encode_cursor(next_position) if next_position is not None else None,
    )


@functools.cache
def _schema(kind: str) -> dict[str, Any]:
    return input_schema(KINDS[kind])


@get("/v1/jobs/kinds")
async def list_kinds(state: State, who: Principal) -> KindList:
    """Every job kind with its description, input schema and availability here."""
    registry: ExecutorRegistry | None = state.deps.registry
    return KindList(
        kinds=[
            KindView(
                kind=spec.name,
                description=spec.description,
                available=registry is not None and registry.available(spec.family),
                input_schema=_schema(spec.name),
            )
            for spec in KINDS.values()
        ]
    )


@get("/v1/jobs/{job_id:str}")
async def get_job(job_id: str, state: State, who: Principal) -> JobResource:
    """One job of the caller's account."""
    service: JobService = state.deps.service
    await service.catch_up(who.account)
    return JobResource.of(await service.get(who.account, job_id))


@post("/v1/jobs/{job_id:str}/cancel", status_code=200)
async def cancel_job(job_id: str, state: State, who: Principal) -> JobResource:
    """Cancel a job that has not finished."""
    service: JobService = state.deps.service
    return JobResource.of(await service.cancel(who.account, who.actor, job_id))


@post("/v1/jobs/{job_id:str}/retry", status_code=200)
async def retry_job(job_id: str, state: State, who: Principal) -> JobResource:
    """Retry a failed or cancelled job."""
    service: JobService = state.deps.service
    return JobResource.of(await service.retry(who.account, who.actor, job_id))


@get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/readyz")
async def readyz(state: State) -> Response[bytes]:
    """NATS reachable, streams present, read model caught up."""
    check = state.deps.ready
    reason = await check() if check is not None else None
    if reason is not None:
        return problem(503, "Not ready", reason)
    return _json({"status": "ready"})


@get("/metrics")
async def metrics(state: State, who: Principal) -> Response[str]:
    """Prometheus metrics."""
    deps: ApiDeps = state.deps
    text = deps.metrics.render(
        queue_depth=deps.queue_depth(),
        lag_seconds=deps.service.read_model.lag_seconds,
        extra=None,
    )
    return Response(text, media_type="text/plain; version=0.0.4")


def create_app(deps: ApiDeps, *, max_body_bytes: int = 1_048_576) -> Litestar:
    """The Litestar application, given every dependency explicitly."""
    return Litestar(
        route_handlers=[
            create_job,
            list_jobs,
            list_kinds,
            get_job,
            cancel_job,
            retry_job,
            healthz,
            readyz,
            metrics,
            *SESSION_ROUTES,
            *ARTIFACT_ROUTES,
            *LOG_ROUTES,
            *deps.extra_routes,
        ],
        dependencies={"who": Provide(principal)},
        state=State({"deps": deps}),
        exception_handlers=HANDLERS,  # type: ignore[arg-type]
        request_max_body_size=max_body_bytes,
        openapi_config=OpenAPIConfig(title="Chaser Jobs", version="0.1.0", path="/schema"),
        debug=False,
    )
