"""`chaser runner run-workflow`: a whole workflow as `github.runner` jobs, in `needs` order.

Each job (each matrix combination) becomes one `github.runner` job; a job starts once
every job it needs has finished, with their results and outputs in its `needs` input and
the status of all its ancestors (what job-level `success()`/`failure()` read); its `if:`
is evaluated here first and a false one skips it, as GitHub would. A local reusable
workflow (`uses: ./.github/workflows/x.yml`) is expanded into its jobs; its outputs come
from `on.workflow_call.outputs`. `fail-fast` cancels a job's other combinations when one
fails; `max-parallel` bounds how many run at once.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cli.client import ApiClient, CliError, Job
from executors.github import planner
from executors.github.contexts import RunInfo, declared_inputs, github_context, input_defaults
from executors.github.errors import WorkflowError, WorkflowInvalid
from executors.github.evaluate import Scope
from executors.github.matrix import select, strategy_of
from executors.github.planner import JobResult
from executors.github.workflow import Job as WorkflowJob
from executors.github.workflow import Workflow, load_workflow

POLL = 0.25
TERMINAL = ("succeeded", "failed", "cancelled")
FetchText = Callable[[str], str]


@dataclass
class RunOptions:
    """What the command line says about the run."""

    workspace: str
    event: str
    payload: dict[str, Any]
    info: RunInfo
    inputs: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)
    matrix: dict[str, list[str]] = field(default_factory=dict)
    queue_timeout_ms: int | None = None


@dataclass
class Leg:
    """One submitted combination."""

    matrix: dict[str, Any] | None
    job_id: str | None = None
    status: str = "pending"  # pending | running | done
    result: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    error: str = ""


@dataclass
class Node:
    """One workflow job of the run (a called workflow's jobs are nodes too)."""

    key: str
    job: WorkflowJob
    workflow: Workflow
    path: str
    needs: list[str]
    ancestors: set[str]
    call: Call
    state: str = "pending"  # pending | running | calling | done
    legs: list[Leg] = field(default_factory=list)
    result: JobResult | None = None
    children: list[str] = field(default_factory=list)
    fail_fast: bool = True
    max_parallel: int | None = None
    called: Workflow | None = None


@dataclass
class Call:
    """How the nodes of one workflow are run: the entry workflow, or a call of a reusable
    one (its inputs and secrets)."""

    inputs: dict[str, Any]
    secrets: dict[str, str]
    called: bool = False
    prefix: str = ""


class WorkflowRun:
    """Runs one workflow's jobs through the API and collects their results."""

    def __init__(self, client: ApiClient, options: RunOptions, fetch: FetchText) -> None:
        self.client = client
        self.options = options
        self.fetch = fetch
        self.nodes: dict[str, Node] = {}

    def plan(self, workflow: Workflow, path: str, only: list[str], call: Call) -> list[str]:
        """Add a workflow's jobs as nodes; their keys."""
        keys: list[str] = []
        for stage in planner.stages(
            workflow, self.options.event if not call.called else "workflow_call", only
        ):
            for job_id in stage:
                job = workflow.jobs[job_id]
                key = call.prefix + job_id
                self.nodes[key] = Node(
                    key=key,
                    job=job,
                    workflow=workflow,
                    path=path,
                    needs=[call.prefix + n for n in job.needs],
                    ancestors={call.prefix + a for a in planner.ancestors(workflow, job_id)},
                    call=call,
                )
                keys.append(key)
        return keys

    def run(self) -> None:
        """Until every node is done: start the ready ones, follow the running ones."""
        while any(node.state != "done" for node in self.nodes.values()):
            progressed = False
            for node in list(self.nodes.values()):
                if node.state == "pending" and self._ready(node):
                    self._start(node)
                    progressed = True
                elif node.state == "running":
                    progressed |= self._follow(node)
                elif node.state == "calling":
                    progressed |= self._collect(node)
            if not progressed:
                time.sleep(POLL)

    def _ready(self, node: Node) -> bool:
        return all(self.nodes[n].state == "done" for n in node.needs if n in self.nodes)

    def _results(self, keys: set[str] | list[str]) -> dict[str, JobResult]:
        found = {}
        for key in keys:
            result = self.nodes[key].result if key in self.nodes else None
            found[key] = result or JobResult(planner.SKIPPED)
        return found

    def _scope(self, node: Node) -> Scope:
        info = self.options.info
        github = github_context(info, workflow=node.workflow.name, job=node.job.id)
        base = {"github": github, "vars": self.options.vars, "env": {}}
        declared = declared_inputs(node.workflow, called=node.call.called)
        base["inputs"] = input_defaults(declared, node.call.inputs, Scope({**base, "inputs": {}}))
        needs = {n.removeprefix(node.call.prefix): r for n, r in self._results(node.needs).items()}
        status = planner.status_of(r.result for r in self._results(node.ancestors).values())
        return planner.job_scope(base, needs, status)

    def _start(self, node: Node) -> None:
        scope = self._scope(node)
        if not planner.should_run(node.job, scope):
            node.state, node.result = "done", JobResult(planner.SKIPPED)
            return
        if node.job.uses is not None:
            self._call(node, scope)
            return
        strategy = strategy_of(node.job.strategy, scope)
        node.fail_fast, node.max_parallel = strategy.fail_fast, strategy.max_parallel
        kept = select(strategy.combinations, self.options.matrix) if strategy.has_matrix else [0]
        if not kept:
            node.state, node.result = "done", JobResult(planner.SKIPPED)
            return
        node.legs = [
            Leg(matrix=strategy.combinations[i] if strategy.has_matrix else None) for i in kept
        ]
        node.state = "running"
        self._submit_more(node, scope)

    def _submit_more(self, node: Node, scope: Scope) -> None:
        limit = node.max_parallel or len(node.legs)
        running = sum(1 for leg in node.legs if leg.status == "running")
        for leg in node.legs:
            if running >= limit:
                return
            if leg.status == "pending":
                leg.job_id = self.client.create_job(
                    {"kind": "github.runner", "input": self._input(node, leg, scope)}
                )["id"]
                leg.status = "running"
                running += 1

    def _input(self, node: Node, leg: Leg, scope: Scope) -> dict[str, Any]:
        options, info = self.options, self.options.info
        needs = {
            n.removeprefix(node.call.prefix): r.as_need()
            for n, r in self._results(node.needs).items()
        }
        body: dict[str, Any] = {
            "workspace": options.workspace,
            "workflow_path": node.path,
            "job": node.job.id,
            "event_name": options.event,
            "event": options.payload,
            "repository": info.repository,
            "actor": info.actor,
            "inputs": node.call.inputs,
            "env": options.env,
            "secrets": node.call.secrets,
            "vars": options.vars,
            "needs": needs,
            "needs_status": scope.status,
            "run_id": info.run_id,
            "run_number": info.run_number,
            "workflow_call": node.call.called,
        }
        optional = {
            "ref": info.ref,
            "sha": info.sha,
            "matrix": leg.matrix,
            "queue_timeout_ms": options.queue_timeout_ms,
        }
        body.update({k: val for k, val in optional.items() if val is not None})
        return body

    def _follow(self, node: Node) -> bool:
        changed = False
        for leg in node.legs:
            if leg.status != "running" or leg.job_id is None:
                continue
            job = self.client.get_job(leg.job_id)
            if job.get("status") not in TERMINAL:
                continue
            _finish_leg(leg, job)
            changed = True
            if leg.result == planner.FAILURE and node.fail_fast:
                self._cancel_rest(node)
        if changed:
            self._submit_more(node, self._scope(node))
        if all(leg.status == "done" for leg in node.legs):
            node.state = "done"
            node.result = planner.combine(JobResult(leg.result, leg.outputs) for leg in node.legs)
        return changed

    def _cancel_rest(self, node: Node) -> None:
        for leg in node.legs:
            if leg.status == "pending":
                leg.status, leg.result = "done", planner.CANCELLED
            elif leg.status == "running" and leg.job_id is not None:
                # It may have finished meanwhile: then the cancel answers 409.
                with contextlib.suppress(CliError):
                    self.client.cancel_job(leg.job_id)

    def _call(self, node: Node, scope: Scope) -> None:
        assert node.job.uses is not None
        path = node.job.uses.removeprefix("./")
        if not node.job.uses.startswith("./") or "@" in node.job.uses:
            raise WorkflowInvalid(
                f"job {node.key}: only local reusable workflows can be called ({node.job.uses})"
            )
        called = load_workflow(self.fetch(path), path)
        inputs = planner.call_inputs(called, node.job, scope)
        secrets = planner.call_secrets(node.job, node.call.secrets, scope)
        call = Call(inputs=inputs, secrets=secrets, called=True, prefix=f"{node.key}/")
        node.children = self.plan(called, path, [], call)
        for key in node.children:
            self.nodes[key].ancestors |= node.ancestors
        node.state = "calling"
        node.called = called

    def _collect(self, node: Node) -> bool:
        if any(self.nodes[key].state != "done" for key in node.children):
            return False
        called = node.called
        assert called is not None
        results = {
            key.removeprefix(node.key + "/"): self.nodes[key].result or JobResult(planner.SKIPPED)
            for key in node.children
        }
        outputs = planner.call_outputs(called, results, self._scope(node))
        combined = planner.combine(results.values())
        node.state, node.result = "done", JobResult(combined.result, outputs)
        return True

    def rows(self) -> list[dict[str, Any]]:
        """One row per combination (and per skipped or called job)."""
        rows: list[dict[str, Any]] = []
        for node in self.nodes.values():
            result = node.result.result if node.result else ""
            if not node.legs:
                kind = "call" if node.children else "-"
                rows.append(
                    {
                        "job": node.key,
                        "matrix": None,
                        "conclusion": result,
                        "job_id": kind,
                        "error": "",
                    }
                )
            for leg in node.legs:
                rows.append(
                    {
                        "job": node.key,
                        "matrix": leg.matrix,
                        "conclusion": leg.result,
                        "job_id": leg.job_id,
                        "error": leg.error,
                    }
                )
        return rows

    def succeeded(self) -> bool:
        """Whether every job that ran concluded success (skipped ones do not count)."""
        return all(
            node.result is not None and planner.ok(node.result.result)
            for node in self.nodes.values()
        )


def _finish_leg(leg: Leg, job: Job) -> None:
    leg.status = "done"
    found = job.get("result")
    result: dict[str, Any] = found if isinstance(found, dict) else {}
    if job["status"] == "cancelled":
        leg.result = planner.CANCELLED
    else:
        fallback = planner.SUCCESS if job["status"] == "succeeded" else planner.FAILURE
        leg.result = str(result.get("conclusion") or fallback)
    outputs = result.get("outputs")
    leg.outputs = {str(k): str(v) for k, v in outputs.items()} if isinstance(outputs, dict) else {}
    error = job.get("error") or {}
    leg.error = f"{error.get('code')}: {error.get('message')}" if error else ""


def start_run(
    client: ApiClient, options: RunOptions, path: str, only: list[str], fetch: FetchText
) -> WorkflowRun:
    """Load and plan the workflow (WorkflowError when it is invalid), then run it."""
    workflow = load_workflow(fetch(path), path)
    run = WorkflowRun(client, options, fetch)
    call = Call(inputs=dict(options.inputs), secrets=dict(options.secrets))
    run.plan(workflow, path, only, call)
    run.run()
    return run


__all__ = ["RunOptions", "WorkflowError", "WorkflowRun", "start_run"]
