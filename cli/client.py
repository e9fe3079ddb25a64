"""HTTP client of the jobs REST API, used by `chaser jobs ...`.

CliError                    something to tell the user, with the exit code to leave with
├── UsageError              the command line itself is wrong (exit 2)
├── ApiError                the API answered with a problem+json body (exit 1)
├── ConnectionFailed        the API could not be reached or did not answer (exit 1)
└── WaitTimeout             the job was not terminal before `--timeout` (exit 124)

httpx exceptions are translated here and never leave this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import httpx
import msgspec

from cli.sse import parse_sse
from schemas.common import TERMINAL

DEFAULT_URL = "http://127.0.0.1:8080"
REQUEST_TIMEOUT = 30.0
POLL_START = 0.02
POLL_CAP = 0.5
POLL_FACTOR = 1.5

Job = dict[str, Any]
Params = Mapping[str, str | int | list[str]]


class CliError(Exception):
    """Root of the errors `chaser jobs` reports; carries the process exit code."""

    exit_code = 1


class UsageError(CliError):
    """The command line is inconsistent in a way argparse cannot express."""

    exit_code = 2


class ApiError(CliError):
    """A problem+json answer: `<status> <title>: <detail>`."""

    def __init__(self, status: int, title: str, detail: str, field: str | None = None) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.title = title
        self.detail = detail
        self.field = field


class ConnectionFailed(CliError):
    """No answer from the API (refused, DNS, timeout, broken connection)."""


class WaitTimeout(CliError):
    """The job did not reach a terminal status in time."""

    exit_code = 124

    def __init__(self, job_id: str, timeout: float, status: str | None) -> None:
        seen = f" (last status: {status})" if status else ""
        super().__init__(f"timed out after {timeout:g}s waiting for job {job_id}{seen}")
        self.job_id = job_id
        self.status = status


def _api_error(response: httpx.Response) -> ApiError:
    """Read a problem+json body; fall back on the status line for anything else."""
    try:
        body = msgspec.json.decode(response.content)
    except msgspec.DecodeError:
        body = None
    if not isinstance(body, dict):
        text = response.text.strip()[:200] or "(empty body)"
        return ApiError(response.status_code, response.reason_phrase or "Error", text)
    return ApiError(
        int(body.get("status", response.status_code)),
        str(body.get("title", response.reason_phrase or "Error")),
        str(body.get("detail", "")),
        body.get("field"),
    )


class ApiClient:
    """The jobs endpoints over HTTP, authenticated with a bearer key, for one account."""

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        account: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if account:
            headers["X-Chaser-Account"] = account
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=REQUEST_TIMEOUT, transport=transport
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, account: str | None = None) -> ApiClient:
        """`CHASER_API_URL`, `CHASER_API_KEY`, and `--account` or else `CHASER_ACCOUNT`."""
        key = environ.get("CHASER_API_KEY", "").strip()
        if not key:
            raise CliError(
                "CHASER_API_KEY is not set; create a key with `chaser keys create --account NAME`"
            )
        url = environ.get("CHASER_API_URL", "").strip() or DEFAULT_URL
        return cls(url, key, account=account or environ.get("CHASER_ACCOUNT") or None)

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection pool."""
        self._http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Params | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One call; the decoded JSON body on 2xx, ApiError or ConnectionFailed otherwise."""
        content = None if body is None else msgspec.json.encode(body)
        headers = {"Content-Type": "application/json"} if content is not None else None
        try:
            response = self._http.request(
                method,
                path,
                content=content,
                headers=headers,
                params=params,
                timeout=REQUEST_TIMEOUT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(f"the API at {self.base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise _api_error(response)
        try:
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError as exc:
            raise ConnectionFailed(f"the API at {self.base_url} answered with non-JSON") from exc

    def request_bytes(
        self, method: str, path: str, *, content: bytes | None = None, timeout: float | None = None
    ) -> bytes:
        """One call with a raw body and a raw answer (files, archives); ApiError or
        ConnectionFailed as `request`."""
        try:
            response = self._http.request(
                method,
                path,
                content=content,
                headers={"Content-Type": "application/x-tar"} if content is not None else None,
                timeout=REQUEST_TIMEOUT if timeout is None else timeout,
            )
        except httpx.TimeoutException as exc:
            raise ConnectionFailed(f"the API at {self.base_url} did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach the API at {self.base_url}: {exc}") from exc
        if response.is_error:
            raise _api_error(response)
        return response.content

    def create_job(self, body: dict[str, Any]) -> Job:
        """`POST /v1/jobs`."""
        job: Job = self.request("POST", "/v1/jobs", body=body)
        return job

    def get_job(self, job_id: str, *, timeout: float | None = None) -> Job:
        """`GET /v1/jobs/{id}`."""
        job: Job = self.request("GET", f"/v1/jobs/{_segment(job_id)}", timeout=timeout)
        return job

    def cancel_job(self, job_id: str) -> Job:
        """`POST /v1/jobs/{id}/cancel`."""
        job: Job = self.request("POST", f"/v1/jobs/{_segment(job_id)}/cancel")
        return job

    def retry_job(self, job_id: str) -> Job:
        """`POST /v1/jobs/{id}/retry`."""
        job: Job = self.request("POST", f"/v1/jobs/{_segment(job_id)}/retry")
        return job

    def list_jobs(self, params: Params) -> dict[str, Any]:
        """`GET /v1/jobs`: one page, `{"items": [...], "next_cursor": ...}`."""
        page: dict[str, Any] = self.request("GET", "/v1/jobs", params=params)
        return page

    def iter_pages(self, params: Params) -> Iterator[dict[str, Any]]:
        """Every page from `params` on, following `next_cursor`."""
        query = dict(params)
        while True:
            page = self.list_jobs(query)
            yield page
            cursor = page.get("next_cursor")
            if not cursor:
                return
            query["cursor"] = cursor

    def kinds(self) -> dict[str, Any]:
        """`GET /v1/jobs/kinds`."""
        kinds: dict[str, Any] = self.request("GET", "/v1/jobs/kinds")
        return kinds

    def stream_lines(
        self, path: str, *, params: Params | None = None, timeout: float | None = None
    ) -> Iterator[bytes]:
        """A streaming GET, line by line as the server sends them; `timeout` bounds the whole
        stream (WaitTimeout when it runs out, as a stream may stay open for a long time)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        read = httpx.Timeout(REQUEST_TIMEOUT, read=None if timeout is None else timeout)
        try:
            with self._http.stream("GET", path, params=params, timeout=read) as response:
                if response.is_error:
                    response.read()
                    raise _api_error(response)
                for line in response.iter_lines():
                    yield line.encode()
                    if deadline is not None and time.monotonic() > deadline:
                        raise WaitTimeout(path, timeout or 0, None)
        except httpx.TimeoutException as exc:
            raise WaitTimeout(path, timeout or 0, None) from exc
        except httpx.HTTPError as exc:
            raise ConnectionFailed(f"cannot reach the API at {self.base_url}: {exc}") from exc


def _segment(job_id: str) -> str:
    """A job id as one path segment (ids never contain `/`; refuse rather than mis-route)."""
    if not job_id or "/" in job_id or job_id in {".", ".."}:
        raise UsageError(f"not a job id: {job_id!r}")
    return job_id


def is_terminal(job: Job) -> bool:
    """Whether the job has reached succeeded, failed or cancelled."""
    return job.get("status") in TERMINAL


def wait_for_terminal(client: ApiClient, job_id: str, *, timeout: float | None = None) -> Job:
    """Block until the job is terminal and return it; WaitTimeout after `timeout` seconds.

    The one place that knows how to wait: it follows `GET /v1/jobs/{id}/events`, which ends
    when the job is terminal; against a server without that stream it polls
    `GET /v1/jobs/{id}` with a capped backoff.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        return _wait_streaming(client, job_id, deadline, timeout)
    except _NoStream:
        return _wait_polling(client, job_id, deadline, timeout)


class _NoStream(Exception):
    """The server has no job event stream."""


def _wait_streaming(
    client: ApiClient, job_id: str, deadline: float | None, timeout: float | None
) -> Job:
    path = f"/v1/jobs/{_segment(job_id)}/events"
    last: str | None = None
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(job_id, timeout or 0, None)
        lines = client.stream_lines(
            path, params={"after": last} if last else None, timeout=remaining
        )
        try:
            for message in parse_sse(line.decode() for line in lines):
                last = message.id or last
        except WaitTimeout:
            raise WaitTimeout(job_id, timeout or 0, None) from None
        except ApiError as exc:
            if exc.status not in (404, 405):
                raise
            client.get_job(job_id)  # 404 here too: no such job, say so
            raise _NoStream from exc  # the job exists, the stream does not
        job = client.get_job(job_id, timeout=_request_budget(remaining))
        if is_terminal(job):
            return job
        time.sleep(POLL_START)  # the stream ended early (a server shutting down): resume


def _wait_polling(
    client: ApiClient, job_id: str, deadline: float | None, timeout: float | None
) -> Job:
    delay = POLL_START
    status: str | None = None
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise WaitTimeout(job_id, timeout or 0, status)
        try:
            job = client.get_job(job_id, timeout=_request_budget(remaining))
        except ConnectionFailed:
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(job_id, timeout or 0, status) from None
            raise
        if is_terminal(job):
            return job
        status = job.get("status")
        time.sleep(delay if remaining is None else min(delay, max(remaining, 0.0)))
        delay = min(delay * POLL_FACTOR, POLL_CAP)


def _request_budget(remaining: float | None) -> float:
    """A request may not outlive the wait's deadline (but gets a moment to answer)."""
    if remaining is None:
        return REQUEST_TIMEOUT
    return max(min(REQUEST_TIMEOUT, remaining), 0.05)
