"""`chaser runner ...`: GitHub Actions workflows on the deployment's self-hosted runners.

chaser runner list
chaser runner run-workflow PATH --workspace W [--event NAME] [--event-payload FILE]
    [--job ID]... [--secret K=V]... [--env K=V]... [--input K=V]... [--var K=V]...
    [--matrix K=V]... [--actor NAME] [--repository OWNER/NAME] [--ref REF] [--sha SHA]
    [--queue-timeout-ms N] [--wait] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any, TypeAlias

import msgspec

from cli.client import ApiClient, ApiError, UsageError
from cli.jobs import emit_json, env_pair, positive_int, run, table
from cli.workflow_run import Call, RunOptions, WorkflowRun
from executors.github.contexts import RunInfo
from executors.github.errors import WorkflowError, WorkflowInvalid
from executors.github.values import to_string
from executors.github.workflow import load_workflow

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
RUNNER_COLUMNS = ("name", "status", "running", "capacity", "image", "labels")
RUN_COLUMNS = ("job", "matrix", "conclusion", "job_id", "error")
WORKFLOW_SUFFIXES = (".yml", ".yaml")


def cmd_list(client: ApiClient, args: argparse.Namespace) -> int:
    """`runner list`: the runners of live `github` executors."""
    page = client.request("GET", "/v1/runners")
    if args.json:
        emit_json(page)
        return 0
    rows = [{**r, "labels": ",".join(r["labels"])} for r in page["items"]]
    print(table(rows, RUNNER_COLUMNS) if rows else "no runners online")
    return 0


def _fetcher(client: ApiClient, workspace: str) -> Any:
    def fetch(path: str) -> str:
        try:
            data = client.request_bytes("GET", f"/v1/workspaces/{workspace}/files/{path}")
        except ApiError as exc:
            if exc.status in (404, 422):
                raise WorkflowInvalid(f"unable to read workflow '{path}': {exc.detail}") from exc
            raise
        return data.decode("utf-8", "replace")

    return fetch


def _pairs(values: list[tuple[str, str]] | None) -> dict[str, str]:
    return dict(values or [])


def _payload(args: argparse.Namespace, inputs: dict[str, str]) -> dict[str, Any]:
    if args.event_payload:
        try:
            with open(args.event_payload, encoding="utf-8") as handle:
                payload = json.load(handle)
        except (OSError, ValueError) as exc:
            raise UsageError(f"--event-payload {args.event_payload}: {exc}") from exc
        if not isinstance(payload, dict):
            raise UsageError("--event-payload must hold a JSON object")
        return payload
    if inputs and args.event in ("workflow_dispatch", "workflow_call"):
        return {"inputs": dict(inputs)}
    return {}


def options_of(args: argparse.Namespace) -> RunOptions:
    """The run's options from the command line."""
    inputs = _pairs(args.input)
    matrix: dict[str, list[str]] = {}
    for key, value in args.matrix or []:
        matrix.setdefault(key, []).append(value)
    info = RunInfo(
        event_name=args.event,
        event=_payload(args, inputs),
        ref=args.ref,
        sha=args.sha,
        repository=args.repository,
        actor=args.actor,
        run_id=str(int(time.time() * 1000) % 10_000_000_000),
    )
    return RunOptions(
        workspace=args.workspace,
        event=args.event,
        payload=info.event,
        info=info,
        inputs=dict(inputs),
        env=_pairs(args.env),
        secrets=_pairs(args.secret),
        vars=_pairs(args.var),
        matrix=matrix,
        queue_timeout_ms=args.queue_timeout_ms,
    )


def _workflow_paths(fetch: Any, path: str) -> list[str]:
    """The workflow files a PATH names: itself, or every *.yml/*.yaml directly in it."""
    text = fetch(path)
    try:
        listing = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return [path]
    if not (isinstance(listing, dict) and set(listing) == {"entries"}):
        return [path]
    names = [e["name"] for e in listing["entries"] if e.get("type") == "file"]
    return [f"{path.rstrip('/')}/{n}" for n in names if n.endswith(WORKFLOW_SUFFIXES)]


def cmd_run_workflow(client: ApiClient, args: argparse.Namespace) -> int:
    """`runner run-workflow`: run a workflow's jobs in `needs` order and print a table."""
    options = options_of(args)
    fetch = _fetcher(client, args.workspace)
    try:
        paths = _workflow_paths(fetch, args.path)
        flow = WorkflowRun(client, options, fetch)
        for path in paths:
            prefix = f"{path}:" if len(paths) > 1 else ""
            call = Call(inputs=dict(options.inputs), secrets=dict(options.secrets), prefix=prefix)
            workflow = load_workflow(fetch(path), path)
            only = [job for job in args.job or [] if job in workflow.jobs or len(paths) == 1]
            if args.job and not only:
                continue  # in a directory, --job picks the workflows that have the job
            flow.plan(workflow, path, only, call)
        flow.run()
    except WorkflowError as exc:
        print(f"chaser: invalid workflow: {exc}", file=sys.stderr)
        return 1
    rows = flow.rows()
    succeeded = flow.succeeded()
    if args.json:
        emit_json({"conclusion": "success" if succeeded else "failure", "jobs": rows})
    elif rows:
        shown = [{**r, "matrix": _matrix(r["matrix"])} for r in rows]
        print(table(shown, RUN_COLUMNS))
    else:
        print(f"no job of {args.path} runs on {args.event}")
    return 0 if succeeded or not args.wait else 1


def _matrix(matrix: dict[str, Any] | None) -> str | None:
    if not matrix:
        return None
    return ",".join(f"{k}={to_string(v)}" for k, v in matrix.items())


def register_runner(sub: SubParsers) -> None:
    """Add the `runner` command tree."""
    runner = sub.add_parser("runner", help="GitHub Actions workflows on self-hosted runners")
    commands = runner.add_subparsers(dest="runner_command", required=True)
    listing = commands.add_parser("list", help="runners online: labels, image, busy or idle")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--account", help="account to act for (default: $CHASER_ACCOUNT)")
    listing.set_defaults(func=run(cmd_list))

    p = commands.add_parser("run-workflow", help="run a workflow's jobs in needs order")
    p.add_argument("path", metavar="PATH", help="workflow file (or directory) in the workspace")
    p.add_argument("--workspace", required=True, help="workspace holding the repository")
    p.add_argument("--event", default="push", help="event name (default push)")
    p.add_argument("--event-payload", metavar="FILE", help="event payload (local JSON file)")
    p.add_argument("--job", action="append", metavar="ID", help="only this job (and its needs)")
    for flag, text in (
        ("--secret", "a secret"),
        ("--env", "run-level env"),
        ("--input", "a workflow input"),
        ("--var", "a configuration variable (vars)"),
        ("--matrix", "keep combinations whose KEY is VALUE"),
    ):
        p.add_argument(flag, type=env_pair, action="append", metavar="K=V", help=text)
    p.add_argument("--actor", default="chaser", help="github.actor")
    p.add_argument("--repository", default="chaser/repository", help="OWNER/NAME")
    p.add_argument("--ref", help="github.ref (default refs/heads/main)")
    p.add_argument("--sha", help="github.sha")
    p.add_argument("--queue-timeout-ms", type=positive_int, metavar="N")
    p.add_argument("--wait", action="store_true", help="exit 1 unless every job succeeded")
    p.add_argument("--json", action="store_true")
    p.add_argument("--account", help="account to act for (default: $CHASER_ACCOUNT)")
    p.set_defaults(func=run(cmd_run_workflow))
