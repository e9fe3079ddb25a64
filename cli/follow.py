"""A job's output on the terminal: `chaser jobs logs ID [--follow]`, and `chaser jobs exec
--wait` without `--json`, which streams the command's output live (stdout to stdout, stderr
and the system's own messages to stderr) and exits with the command's exit code."""

from __future__ import annotations

import argparse
import base64
import sys
import time
from typing import Any, BinaryIO

import msgspec

from cli.client import ApiClient, Job, WaitTimeout, is_terminal

# Failures where the command itself said what went wrong (its stderr is already shown).
COMMAND_FAILURES = frozenset({"command_failed", "step_failed"})


def write_chunk(line: bytes, out: BinaryIO, err: BinaryIO) -> None:
    """Write one NDJSON log line's bytes to stdout or stderr, as its channel says."""
    record: dict[str, Any] = msgspec.json.decode(line)
    if "data" in record:
        data = str(record["data"]).encode()
    else:
        data = base64.b64decode(record.get("data_b64", ""))
    target = out if record.get("channel") == "stdout" else err
    target.write(data)
    target.flush()


def copy_logs(
    client: ApiClient,
    job_id: str,
    *,
    attempt: int | None = None,
    follow: bool = False,
    timeout: float | None = None,
    raw: bool = False,
) -> None:
    """Copy a job attempt's output to this process's stdout and stderr (NDJSON with `raw`)."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    params: dict[str, str | int] = {"follow": "true" if follow else "false"}
    if attempt is not None:
        params["attempt"] = attempt
    try:
        for line in client.stream_lines(f"/v1/jobs/{job_id}/logs", params=params, timeout=timeout):
            if not line:
                continue
            if raw:
                out.write(line + b"\n")
                out.flush()
            else:
                write_chunk(line, out, err)
    except WaitTimeout:
        raise WaitTimeout(job_id, timeout or 0, None) from None


def cmd_logs(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs logs ID`: what the job wrote; with `--follow`, live until the attempt ends."""
    copy_logs(
        client,
        args.job_id,
        attempt=args.attempt,
        follow=args.follow,
        timeout=args.timeout,
        raw=args.json,
    )
    return 0


def exit_status(job: Job) -> int:
    """The command's exit code; 1 for a job that failed otherwise (said on stderr)."""
    if job.get("status") == "succeeded":
        return 0
    result = job.get("result")
    code = result.get("exit_code") if isinstance(result, dict) else None
    error = job.get("error") or {}
    if error.get("code") not in COMMAND_FAILURES:
        reason = f"{error.get('code')}: {error.get('message')}" if error else "no error recorded"
        sys.stderr.write(f"chaser: job {job.get('id')} {job.get('status')}: {reason}\n")
    if isinstance(code, int) and 0 < code < 256:
        return code
    return 1


def stream_job(client: ApiClient, body: dict[str, Any], timeout: float | None) -> int:
    """Create a job, stream its output until it ends (following retries), exit like it."""
    deadline = None if timeout is None else time.monotonic() + timeout
    job = client.create_job(body)
    shown: set[int] = set()
    while True:
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0.01)
        attempt = int(job.get("attempt") or 1)
        if attempt in shown:
            time.sleep(0.1)  # this attempt's output is shown: wait for its end or the next
        else:
            shown.add(attempt)
            copy_logs(client, job["id"], attempt=attempt, follow=True, timeout=remaining)
        job = client.get_job(job["id"])
        if is_terminal(job):
            return exit_status(job)
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimeout(job["id"], timeout or 0, job.get("status"))
