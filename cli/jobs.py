"""`chaser jobs ...`: create, inspect and manage jobs through the REST API."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

import msgspec

from cli.client import (
    ApiClient,
    CliError,
    Job,
    UsageError,
    is_terminal,
    wait_for_terminal,
)
from cli.follow import cmd_logs, stream_job
from schemas.common import JobStatus

Handler = Callable[[ApiClient, argparse.Namespace], int]
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

LIST_COLUMNS = ("id", "kind", "status", "attempt", "created_at")
KIND_COLUMNS = ("kind", "available", "description")


# --- argument types --------------------------------------------------------------------------


def json_object(text: str) -> dict[str, Any]:
    """`--input`: a JSON object."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError('must be a JSON object, e.g. \'{"message": "hi"}\'')
    return value


def env_pair(text: str) -> tuple[str, str]:
    """`--env K=V`."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return int(text)


def seconds(text: str) -> float:
    """A non-negative number of seconds."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}")
    return value


# --- output ----------------------------------------------------------------------------------


def emit_json(value: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _short(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def summary(job: Job, *, outcome: bool = False) -> str:
    """A few `label: value` lines about a job; with `outcome`, its attempt and result or error."""
    rows: list[tuple[str, Any]] = [
        ("id", job.get("id")),
        ("kind", job.get("kind")),
        ("status", job.get("status")),
    ]
    if outcome:
        rows.append(("attempt", f"{job.get('attempt')}/{job.get('max_attempts')}"))
        error = job.get("error")
        if error:
            rows.append(("error", f"{error.get('code')}: {error.get('message')}"))
        elif job.get("result") is not None:
            rows.append(("result", _short(job["result"])))
    return "\n".join(f"{label + ':':8} {value}" for label, value in rows)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Left-aligned columns with a header; the last column is not padded."""
    cells = [[str(c).upper() for c in columns]]
    cells += [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns) - 1)]
    return "\n".join(
        "  ".join([*(v.ljust(w) for v, w in zip(line, widths, strict=False)), line[-1]])
        for line in cells
    )


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "-" if value is None else str(value)


def show_job(job: Job, args: argparse.Namespace) -> int:
    """Print a job as the API returned it, or its summary."""
    if args.json:
        emit_json(job)
    else:
        print(summary(job))
    return 0


def show_final(job: Job, args: argparse.Namespace) -> int:
    """Print a terminal job; exit 0 only when it succeeded."""
    if args.json:
        emit_json(job)
    else:
        print(summary(job, outcome=True))
    return 0 if job.get("status") == JobStatus.SUCCEEDED else 1


# --- handlers --------------------------------------------------------------------------------


def request_body(args: argparse.Namespace, kind: str, job_input: dict[str, Any]) -> dict[str, Any]:
    """The `POST /v1/jobs` body: kind, input and the scheduling flags given."""
    body: dict[str, Any] = {"kind": kind, "input": job_input}
    for name in ("run_at", "idempotency_key", "max_attempts"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    return body


def submit(
    client: ApiClient, args: argparse.Namespace, kind: str, job_input: dict[str, Any]
) -> int:
    """Create a job of `kind`, then show it, or wait for it with `--wait`."""
    job = client.create_job(request_body(args, kind, job_input))
    if not (args.wait or args.timeout is not None):
        return show_job(job, args)
    if not is_terminal(job):
        job = wait_for_terminal(client, job["id"], timeout=args.timeout)
    return show_final(job, args)


def cmd_create(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs create`."""
    return submit(client, args, args.kind, args.input)


def exec_input(args: argparse.Namespace) -> dict[str, Any]:
    """The `sandbox.exec` input the `exec` flags describe."""
    if args.ephemeral and not args.image:
        raise UsageError("jobs exec: --ephemeral needs --image")
    job_input: dict[str, Any] = {"command": args.command}
    if args.session:
        job_input["session_id"] = args.session
    elif args.ephemeral:
        job_input.update(ephemeral=True, image=args.image)
    else:
        job_input["workspace"] = args.workspace
    if args.image and not args.ephemeral:
        job_input["image"] = args.image
    if args.env:
        job_input["env"] = dict(args.env)
    optional = {
        "timeout_ms": args.timeout_ms,
        "workdir": args.workdir,
        "cpu": args.cpu,
        "memory_mb": args.memory_mb,
        "pids": args.pids,
        "network": args.network,
    }
    job_input.update({name: value for name, value in optional.items() if value is not None})
    if args.stdin_file is not None:
        job_input["stdin"] = read_text(args.stdin_file)
    return job_input


def read_text(path: str) -> str:
    """`--stdin-file`: a file's text, or this process's own input for `-`."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"jobs exec: cannot read --stdin-file {path}: {exc}") from exc


def cmd_exec(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs exec`: a `sandbox.exec` job; with `--wait` and no `--json`, its output streams
    live and the exit code is the command's."""
    job_input = exec_input(args)
    if (args.wait or args.timeout is not None) and not args.json:
        return stream_job(client, request_body(args, "sandbox.exec", job_input), args.timeout)
    return submit(client, args, "sandbox.exec", job_input)


def scrape_input(args: argparse.Namespace) -> dict[str, Any]:
    """The `browser.scrape` input the `scrape` flags describe (only the flags given)."""
    given = {
        "selector": args.selector,
        "wait_until": args.wait_until,
        "wait_for_selector": args.wait_for_selector,
        "timeout_ms": args.timeout_ms,
        "session_id": args.session,
    }
    job_input: dict[str, Any] = {"url": args.url}
    job_input.update({name: value for name, value in given.items() if value is not None})
    job_input.update(
        {flag: True for flag in ("html", "attributes", "screenshot") if getattr(args, flag)}
    )
    if args.first:
        job_input["all"] = False
    return job_input


def cmd_scrape(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs scrape`: a `browser.scrape` job."""
    return submit(client, args, "browser.scrape", scrape_input(args))


def list_params(args: argparse.Namespace) -> dict[str, Any]:
    """The query string of `GET /v1/jobs` from the `list` flags."""
    given = {
        "status": args.status,
        "kind": args.kind,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "limit": args.limit,
        "cursor": args.cursor,
    }
    return {name: value for name, value in given.items() if value is not None}


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs list`: one page, or every page with `--all`."""
    params = list_params(args)
    if args.all:
        items = [job for page in client.iter_pages(params) for job in page["items"]]
        page: dict[str, Any] = {"items": items, "next_cursor": None}
    else:
        page = client.list_jobs(params)
    if args.json:
        emit_json(page)
        return 0
    print(table(page["items"], LIST_COLUMNS) if page["items"] else "no jobs")
    if page.get("next_cursor"):
        print(f"more: --cursor {page['next_cursor']} (or --all)")
    return 0


def cmd_get(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs get ID`."""
    return show_job(client.get_job(args.job_id), args)


def cmd_cancel(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs cancel ID`."""
    return show_job(client.cancel_job(args.job_id), args)


def cmd_retry(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs retry ID`."""
    return show_job(client.retry_job(args.job_id), args)


def cmd_wait(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs wait ID`: exit 0 when the job succeeds, 1 otherwise, 124 on timeout."""
    return show_final(wait_for_terminal(client, args.job_id, timeout=args.timeout), args)


def cmd_kinds(client: ApiClient, args: argparse.Namespace) -> int:
    """`jobs kinds`: every kind and whether this deployment can run it."""
    kinds = client.kinds()
    if args.json:
        emit_json(kinds)
    else:
        print(table(kinds["kinds"], KIND_COLUMNS))
    return 0


# --- wiring ----------------------------------------------------------------------------------


def run(handler: Handler) -> Callable[[argparse.Namespace], int]:
    """Give a handler a client; turn CliErrors into `chaser: ...` on stderr and an exit code."""

    def invoke(args: argparse.Namespace) -> int:
        try:
            with ApiClient.from_env(os.environ, account=args.account) as client:
                return handler(client, args)
        except CliError as exc:
            print(f"chaser: {exc}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130

    return invoke


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the API's JSON")
    common.add_argument("--account", help="account to act for (default: $CHASER_ACCOUNT)")
    return common


def _add_submit(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-at", metavar="RFC3339", help="run no earlier than this time")
    parser.add_argument("--idempotency-key", metavar="KEY", help="create at most one such job")
    parser.add_argument("--max-attempts", type=positive_int, metavar="N")
    parser.add_argument("--wait", action="store_true", help="wait until the job finishes")
    parser.add_argument(
        "--timeout", type=seconds, metavar="SECONDS", help="wait at most this long (implies --wait)"
    )


def _add_exec(jobs: SubParsers, common: argparse.ArgumentParser) -> None:
    p = jobs.add_parser("exec", parents=[common], help="run a command in a sandbox")
    p.add_argument("command", help="shell command")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--workspace", help="workspace to run in")
    where.add_argument("--ephemeral", action="store_true", help="a throwaway sandbox (--image)")
    where.add_argument("--session", metavar="ID", help="a live sandbox session to run in")
    p.add_argument("--image", help="container image")
    p.add_argument("--env", type=env_pair, action="append", metavar="NAME=VALUE")
    p.add_argument("--timeout-ms", type=positive_int, metavar="N", help="command time limit")
    p.add_argument("--workdir", metavar="PATH", help="where the command starts")
    p.add_argument("--stdin-file", metavar="PATH", help="the command's input ('-': this one's)")
    p.add_argument("--cpu", type=float, metavar="N", help="CPUs")
    p.add_argument("--memory-mb", type=positive_int, metavar="N", help="memory limit")
    p.add_argument("--pids", type=positive_int, metavar="N", help="process limit")
    p.add_argument("--network", choices=["none", "bridge"])
    _add_submit(p)
    p.set_defaults(func=run(cmd_exec))


def _add_logs(jobs: SubParsers, common: argparse.ArgumentParser) -> None:
    p = jobs.add_parser("logs", parents=[common], help="a job's output (--follow: live)")
    p.add_argument("job_id", metavar="ID")
    p.add_argument("--follow", "-f", action="store_true", help="stream until the attempt ends")
    p.add_argument("--attempt", type=positive_int, metavar="N", help="default: the latest")
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="stop following after")
    p.set_defaults(func=run(cmd_logs))


def _add_list(jobs: SubParsers, common: argparse.ArgumentParser) -> None:
    p = jobs.add_parser("list", parents=[common], help="list jobs, newest first")
    p.add_argument("--status", action="append", choices=[s.value for s in JobStatus])
    p.add_argument("--kind", action="append")
    p.add_argument("--created-after", metavar="RFC3339")
    p.add_argument("--created-before", metavar="RFC3339")
    p.add_argument("--limit", type=positive_int, metavar="N", help="page size")
    p.add_argument("--cursor", help="continue after a previous page")
    p.add_argument("--all", action="store_true", help="follow cursors to the last page")
    p.set_defaults(func=run(cmd_list))


def _add_by_id(jobs: SubParsers, common: argparse.ArgumentParser) -> None:
    for name, handler, text in (
        ("get", cmd_get, "show a job"),
        ("cancel", cmd_cancel, "cancel a job that has not finished"),
        ("retry", cmd_retry, "retry a failed or cancelled job"),
        ("wait", cmd_wait, "wait until a job finishes"),
    ):
        p = jobs.add_parser(name, parents=[common], help=text)
        p.add_argument("job_id", metavar="ID")
        if name == "wait":
            p.add_argument("--timeout", type=seconds, metavar="SECONDS")
        p.set_defaults(func=run(handler))


def register_jobs(sub: SubParsers) -> None:
    """Add the `jobs` command tree."""
    common = _common()
    jobs = sub.add_parser("jobs", help="create and manage jobs").add_subparsers(
        dest="jobs_command", required=True
    )

    create = jobs.add_parser("create", parents=[common], help="create a job of any kind")
    create.add_argument("--kind", required=True)
    create.add_argument("--input", type=json_object, required=True, metavar="JSON")
    _add_submit(create)
    create.set_defaults(func=run(cmd_create))

    _add_exec(jobs, common)

    scrape = jobs.add_parser("scrape", parents=[common], help="scrape a page (browser.scrape)")
    scrape.add_argument("--url", required=True)
    scrape.add_argument("--selector", help="CSS selector to extract")
    scrape.add_argument("--first", action="store_true", help="only the first match")
    scrape.add_argument("--html", action="store_true", help="include HTML")
    scrape.add_argument("--attributes", action="store_true", help="include matches' attributes")
    scrape.add_argument("--wait-until", choices=["load", "domcontentloaded", "networkidle"])
    scrape.add_argument("--wait-for-selector", metavar="CSS", help="wait until this matches")
    scrape.add_argument("--timeout-ms", type=positive_int, metavar="N", help="page time limit")
    scrape.add_argument("--screenshot", action="store_true", help="store a PNG artifact")
    scrape.add_argument("--session", metavar="ID", help="run in this browser session")
    _add_submit(scrape)
    scrape.set_defaults(func=run(cmd_scrape))

    _add_list(jobs, common)
    _add_by_id(jobs, common)
    _add_logs(jobs, common)

    kinds = jobs.add_parser("kinds", parents=[common], help="job kinds and their input schemas")
    kinds.set_defaults(func=run(cmd_kinds))
