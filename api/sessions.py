"""Sessions and workspaces: `/v1/sessions`, `/v1/sessions/{id}` and `/v1/workspaces`."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.datastructures import State

from api.auth import Principal
from api.problems import problem
from engine.aggregates import SessionService
from engine.errors import NotFound
from engine.service import validation_problem
from schemas.api import OpenSessionRequest, SessionPage, WorkspacePage, WorkspaceView
from schemas.sessions import SessionState

_decode_open = msgspec.json.Decoder(OpenSessionRequest).decode


def _sessions(state: State) -> SessionService:
    service: SessionService | None = state.deps.sessions
    if service is None:
        raise NotFound("route", "sessions")
    return service


@post("/v1/sessions", status_code=201)
async def open_session(
    request: Request[Any, Any, Any], state: State, who: Principal
) -> Response[bytes]:
    """Open a live sandbox or browser session."""
    try:
        body = _decode_open(await request.body())
    except msgspec.ValidationError as exc:
        raise validation_problem(exc, "") from exc
    except msgspec.DecodeError as exc:
        return problem(400, "Malformed JSON", f"the body is not valid JSON: {exc}")
    session = await _sessions(state).open(
        who.account,
        who.actor,
        session_type=body.type,
        workspace=body.workspace,
        image=body.image,
        ephemeral=body.ephemeral,
        ttl_seconds=body.ttl_seconds,
        idle_timeout_seconds=body.idle_timeout_seconds,
        options=body.options,
    )
    return Response(
        msgspec.json.encode(session),
        status_code=201,
        media_type="application/json",
        headers={"Location": f"/v1/sessions/{session.id}"},
    )


@get("/v1/sessions")
async def list_sessions(state: State, who: Principal) -> SessionPage:
    """The account's sessions, oldest first."""
    service = _sessions(state)
    await service.jobs.catch_up(who.account)
    return SessionPage(items=service.read_model.sessions(who.account))


@get("/v1/sessions/{session_id:str}")
async def get_session(session_id: str, state: State, who: Principal) -> SessionState:
    """One session of the account."""
    service = _sessions(state)
    await service.jobs.catch_up(who.account)
    session = service.read_model.session(who.account, session_id)
    if session is None:
        raise NotFound("session", session_id)
    return session


@get("/v1/workspaces")
async def list_workspaces(state: State, who: Principal) -> WorkspacePage:
    """The account's workspaces with when they were created and last used."""
    service = _sessions(state)
    await service.jobs.catch_up(who.account)
    sizes = await state.deps.workspace_sizes(who.account)
    read = service.read_model
    return WorkspacePage(
        items=[
            WorkspaceView(
                name=ws.name,
                created_at=ws.created_at,
                last_used_at=read.workspace_last_used(who.account, ws.name),
                size_bytes=sizes.get(ws.name),
            )
            for ws in read.workspaces(who.account)
        ]
    )


ROUTES = [open_session, list_sessions, get_session, list_workspaces]
