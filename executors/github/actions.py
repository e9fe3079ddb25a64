"""`uses:` of a step: what kind of action it names, and action definitions (`action.yml`).
Pure: reading the files is the executor's business.

- `actions/checkout@*`: the repository is already in the workspace (a no-op step).
- `./path`: a local action in the job's workspace (composite, node or docker image).
- `docker://image`: a container of that image runs the step.
- `owner/repo[/path]@ref`: only when the deployment provides it in CHASER_ACTIONS_DIR, as
  `<dir>/<owner>/<repo>/<ref>/[path/]action.yml` or `<dir>/<owner>/<repo>/[path/]action.yml`;
  otherwise the step fails with `action_unavailable`.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from executors.github.errors import WorkflowInvalid
from executors.github.workflow import Step, parse_steps, uses_problem
from executors.github.yamlload import load_yaml

ACTION_FILES = ("action.yml", "action.yaml")
NODE_RUNTIMES = frozenset({"node12", "node16", "node20", "node24"})


@dataclass(frozen=True)
class ActionRef:
    """What a `uses:` names."""

    kind: str  # checkout | local | docker | remote
    uses: str
    path: str = ""  # local: relative to the workspace; remote: inside the repository
    owner: str = ""
    repo: str = ""
    ref: str = ""
    image: str = ""


def parse_uses(uses: str) -> ActionRef:
    """Classify a `uses:` value; WorkflowInvalid when malformed."""
    problem = uses_problem(uses)
    if problem is not None:
        raise WorkflowInvalid(problem)
    if uses.startswith("docker://"):
        return ActionRef(kind="docker", uses=uses, image=uses.removeprefix("docker://"))
    if uses == "." or uses.startswith("./"):
        path = posixpath.normpath(uses)
        if path.startswith(".."):
            raise WorkflowInvalid(f"local action {uses} is outside the workspace")
        return ActionRef(kind="local", uses=uses, path="" if path == "." else path)
    name, _, ref = uses.partition("@")
    owner, repo, *rest = name.split("/")
    kind = "checkout" if (owner.lower(), repo.lower()) == ("actions", "checkout") else "remote"
    return ActionRef(kind=kind, uses=uses, owner=owner, repo=repo, ref=ref, path="/".join(rest))


@dataclass(frozen=True)
class ActionDefinition:
    """An action's `action.yml`."""

    name: str
    using: str
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    steps: tuple[Step, ...] = ()
    main: str = ""
    pre: str = ""
    post: str = ""
    image: str = ""
    entrypoint: str = ""
    args: tuple[Any, ...] = ()
    env: dict[str, Any] = field(default_factory=dict)


def _runs(data: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    runs = data.get("runs")
    if not isinstance(runs, Mapping) or not isinstance(runs.get("using"), str):
        raise WorkflowInvalid(f"{source}: `runs.using` is required")
    return runs


def _composite_steps(runs: Mapping[str, Any], source: str) -> tuple[Step, ...]:
    if not isinstance(runs.get("steps"), list) or not runs["steps"]:
        raise WorkflowInvalid(f"{source}: a composite action needs `runs.steps`")
    steps = parse_steps(runs["steps"], source)
    for step in steps:
        if step.run is not None and not step.shell:
            raise WorkflowInvalid(f"{source}: step {step.index} has `run` without `shell`")
    return steps


def parse_action(text: str, source: str) -> ActionDefinition:
    """An action definition; WorkflowInvalid when it is not a valid one."""
    data = load_yaml(text, source)
    if not isinstance(data, Mapping):
        raise WorkflowInvalid(f"{source}: not a mapping")
    runs = _runs(data, source)
    using = str(runs["using"]).lower()
    common: dict[str, Any] = {
        "name": str(data.get("name") or source),
        "using": using,
        "inputs": dict(data.get("inputs") or {}),
        "outputs": dict(data.get("outputs") or {}),
    }
    if using == "composite":
        return ActionDefinition(**common, steps=_composite_steps(runs, source))
    if using in NODE_RUNTIMES:
        if not isinstance(runs.get("main"), str):
            raise WorkflowInvalid(f"{source}: a node action needs `runs.main`")
        return ActionDefinition(
            **common, main=runs["main"], pre=runs.get("pre", ""), post=runs.get("post", "")
        )
    if using == "docker":
        image = runs.get("image")
        if not isinstance(image, str) or not image:
            raise WorkflowInvalid(f"{source}: a docker action needs `runs.image`")
        args = runs.get("args") or []
        return ActionDefinition(
            **common,
            image=image,
            entrypoint=str(runs.get("entrypoint") or ""),
            args=tuple(args) if isinstance(args, list) else (args,),
            env=dict(runs.get("env") or {}),
        )
    raise WorkflowInvalid(f"{source}: `runs.using: {using}` is not supported")


def input_env(name: str) -> str:
    """The variable an action input is passed in (`INPUT_<NAME>`, spaces as `_`)."""
    return "INPUT_" + name.replace(" ", "_").upper()


def action_inputs(definition: ActionDefinition, given: Mapping[str, Any]) -> dict[str, Any]:
    """The `inputs` of an action: given values, else declared defaults (raw, evaluated by
    the caller), else ''."""
    result: dict[str, Any] = {}
    for name, spec in definition.inputs.items():
        spec = spec if isinstance(spec, Mapping) else {}
        if name in given:
            result[name] = given[name]
        else:
            result[name] = spec.get("default", "")
    for name, value in given.items():
        result.setdefault(name, value)
    return result
