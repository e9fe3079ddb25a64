"""The one place errors become HTTP responses: RFC 9457 problem+json bodies."""

from __future__ import annotations

from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import HTTPException

from engine.errors import (
    ConcurrencyConflict,
    EngineError,
    IdempotencyConflict,
    InvalidInput,
    InvalidTransition,
    NotFound,
    StoreUnavailable,
)

log = structlog.get_logger("chaser.api")

PROBLEM = "application/problem+json"


class ApiProblem(Exception):
    """An HTTP-level refusal (auth, headers) raised by the API layer itself."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.extra = extra


def problem(status: int, title: str, detail: str, **extra: Any) -> Response[bytes]:
    """A problem+json response."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return Response(msgspec.json.encode(body), status_code=status, media_type=PROBLEM)


def _domain(exc: EngineError) -> Response[bytes]:
    match exc:
        case InvalidInput():
            return problem(
                422,
                "Invalid input",
                str(exc),
                field=exc.field,
                reason=exc.reason,
                errors=[{"field": exc.field, "reason": exc.reason}],
            )
        case NotFound():
            return problem(404, "Not found", str(exc))
        case InvalidTransition():
            return problem(409, "Conflict", str(exc), status_now=exc.status, job_id=exc.job_id)
        case IdempotencyConflict():
            return problem(409, "Idempotency key reused", str(exc), job_id=exc.job_id)
        case ConcurrencyConflict():
            return problem(409, "Concurrent change", "the job changed concurrently; try again")
        case StoreUnavailable():
            log.warning("store_unavailable", error=str(exc))
            return problem(503, "Store unavailable", "the event store did not answer; try again")
        case _:
            log.error("engine_error", error=repr(exc))
            return problem(500, "Internal error", "the engine failed; see the server log")


def engine_error_handler(_: Request[Any, Any, Any], exc: EngineError) -> Response[bytes]:
    """Map domain and infrastructure errors."""
    return _domain(exc)


def api_problem_handler(_: Request[Any, Any, Any], exc: ApiProblem) -> Response[bytes]:
    """Map the API layer's own refusals."""
    return problem(exc.status, exc.title, exc.detail, **exc.extra)


def http_error_handler(_: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    """Litestar's own errors (404 route, 405, 413 body too large, bad parameters)."""
    extra: dict[str, Any] = {}
    if isinstance(exc.extra, list) and exc.extra:
        extra["errors"] = [
            {"field": e.get("key"), "reason": e.get("message")}
            for e in exc.extra
            if isinstance(e, dict)
        ]
    title = {413: "Body too large", 404: "Not found", 405: "Method not allowed"}.get(
        exc.status_code, "Bad request"
    )
    return problem(exc.status_code, title, str(exc.detail), **extra)


def internal_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    """Anything unexpected: logged with its traceback, answered without details."""
    log.exception("unhandled_error", error=repr(exc))
    return problem(500, "Internal error", "unexpected error; see the server log")


HANDLERS: dict[type[Exception], Any] = {
    EngineError: engine_error_handler,
    ApiProblem: api_problem_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
