"""The `github`, `runner`, `strategy`, `inputs` and `needs` contexts and the standard
`GITHUB_*`/`RUNNER_*` variables of a job. Pure: everything comes in as arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.github import values as v
from executors.github.evaluate import Scope
from executors.github.templates import evaluate_tree
from executors.github.workflow import Workflow

WORKSPACE = "/github/workspace"
HOME = "/github/home"
TEMP = "/github/runner_temp"
EVENT_PATH = "/github/workflow/event.json"
FILE_COMMANDS = "/github/file_commands"
TOOL_CACHE = "/opt/hostedtoolcache"
ZERO_SHA = "0" * 40
SERVER = "https://github.com"


@dataclass(frozen=True)
class RunInfo:
    """Who and what triggered the run (from a job's input, defaults filled in)."""

    event_name: str = "push"
    event: dict[str, Any] = field(default_factory=dict)
    ref: str | None = None
    sha: str | None = None
    repository: str = "chaser/repository"
    actor: str = "chaser"
    run_id: str = "1"
    run_number: int = 1
    run_attempt: int = 1


def default_ref(info: RunInfo) -> str:
    """The ref of the run: given, else derived from the event, else refs/heads/main."""
    if info.ref:
        return info.ref
    event = info.event
    if isinstance(event.get("ref"), str):
        return str(event["ref"])
    pull = event.get("pull_request")
    if isinstance(pull, Mapping) and pull.get("number") is not None:
        return f"refs/pull/{pull['number']}/merge"
    return "refs/heads/main"


def _pull_refs(info: RunInfo) -> tuple[str, str]:
    if not info.event_name.startswith("pull_request"):
        return "", ""
    pull = info.event.get("pull_request")
    if not isinstance(pull, Mapping):
        return "", ""
    head, base = pull.get("head"), pull.get("base")
    head_ref = head.get("ref") if isinstance(head, Mapping) else None
    base_ref = base.get("ref") if isinstance(base, Mapping) else None
    return v.to_string(head_ref), v.to_string(base_ref)


def _ref_name(ref: str) -> tuple[str, str]:
    for prefix, kind in (("refs/heads/", "branch"), ("refs/tags/", "tag")):
        if ref.startswith(prefix):
            return ref[len(prefix) :], kind
    return ref.rsplit("/", 1)[-1], "branch"


def github_context(info: RunInfo, *, workflow: str, job: str) -> dict[str, Any]:
    """The `github` context of a job."""
    ref = default_ref(info)
    ref_name, ref_type = _ref_name(ref)
    head_ref, base_ref = _pull_refs(info)
    owner = info.repository.split("/", 1)[0]
    return {
        "event_name": info.event_name,
        "event": info.event,
        "event_path": EVENT_PATH,
        "sha": info.sha or info.event.get("after") or ZERO_SHA,
        "ref": ref,
        "ref_name": ref_name,
        "ref_type": ref_type,
        "ref_protected": False,
        "head_ref": head_ref,
        "base_ref": base_ref,
        "repository": info.repository,
        "repository_owner": owner,
        "repositoryUrl": f"git://github.com/{info.repository}.git",
        "actor": info.actor,
        "triggering_actor": info.actor,
        "workflow": workflow,
        "job": job,
        "run_id": info.run_id,
        "run_number": str(info.run_number),
        "run_attempt": str(info.run_attempt),
        "workspace": WORKSPACE,
        "server_url": SERVER,
        "api_url": "https://api.github.com",
        "graphql_url": "https://api.github.com/graphql",
        "retention_days": "90",
        "secret_source": "Actions",
        "token": "",
        "action": "",
        "action_path": "",
        "action_ref": "",
        "action_repository": "",
        "path": "",
        "env": "",
        "output": "",
        "state": "",
        "step_summary": "",
    }


def runner_context(name: str) -> dict[str, Any]:
    """The `runner` context."""
    return {
        "name": name,
        "os": "Linux",
        "arch": "X64",
        "temp": TEMP,
        "tool_cache": TOOL_CACHE,
        "workspace": "/github",
        "environment": "self-hosted",
        "debug": "",
    }


def standard_env(github: Mapping[str, Any], runner: Mapping[str, Any]) -> dict[str, str]:
    """`CI`, `GITHUB_*` and `RUNNER_*` variables."""
    env = {
        "CI": "true",
        "GITHUB_ACTIONS": "true",
        "GITHUB_EVENT_PATH": EVENT_PATH,
        "GITHUB_WORKSPACE": WORKSPACE,
        "RUNNER_OS": "Linux",
        "RUNNER_ARCH": "X64",
        "RUNNER_NAME": v.to_string(runner.get("name")),
        "RUNNER_TEMP": TEMP,
        "RUNNER_TOOL_CACHE": TOOL_CACHE,
        "RUNNER_WORKSPACE": "/github",
        "HOME": HOME,
    }
    names = [
        "event_name",
        "sha",
        "ref",
        "ref_name",
        "ref_type",
        "head_ref",
        "base_ref",
        "repository",
        "repository_owner",
        "actor",
        "triggering_actor",
        "workflow",
        "job",
        "run_id",
        "run_number",
        "run_attempt",
        "server_url",
        "api_url",
        "graphql_url",
        "retention_days",
    ]
    for name in names:
        env[f"GITHUB_{name.upper()}"] = v.to_string(github.get(name))
    return env


def input_defaults(declared: Any, given: Mapping[str, Any], scope: Scope) -> dict[str, Any]:
    """The `inputs` context: given values converted to their declared types, defaults
    (evaluated) for the rest; undeclared given inputs pass through."""
    result: dict[str, Any] = dict(given)
    if not isinstance(declared, Mapping):
        return result
    for name, spec in declared.items():
        spec = spec if isinstance(spec, Mapping) else {}
        kind = spec.get("type", "string")
        if name in given:
            result[name] = typed_input(given[name], kind)
        elif "default" in spec:
            result[name] = typed_input(evaluate_tree(spec["default"], scope), kind)
        elif kind == "boolean":
            result[name] = False
        elif kind == "number":
            result[name] = None
        else:
            result[name] = ""
    return result


def typed_input(value: Any, kind: Any) -> Any:
    """An input value as its declared `type` (`"true"` is true for a boolean)."""
    if kind == "boolean":
        if isinstance(value, str):
            return value.strip().lower() == "true"
        return v.truthy(value)
    if kind == "number":
        number = v.to_number(value)
        return int(number) if number == number and float(number).is_integer() else number
    if kind in ("string", "choice", "environment") and value is not None:
        return v.to_string(value) if not isinstance(value, str) else value
    return value


def declared_inputs(workflow: Workflow, *, called: bool) -> Any:
    """The inputs a workflow declares for how it runs: `workflow_call` when it is called,
    else `workflow_dispatch` (or `workflow_call` when that is its only trigger with inputs)."""
    order = ("workflow_call",) if called else ("workflow_dispatch", "workflow_call")
    for event in order:
        spec = workflow.on.get(event)
        if isinstance(spec, Mapping) and isinstance(spec.get("inputs"), Mapping):
            return spec["inputs"]
    return None
