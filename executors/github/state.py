"""What one running job carries between its steps: contexts, environment layers, `PATH`
additions, masks, the step summary; and each step's result."""

from __future__ import annotations

import fnmatch
import hashlib
import re
import time
from dataclasses import dataclass, field
from typing import Any

from engine.sandbox import Limits
from executors.base import JobContext
from executors.github import values as v
from executors.github.contexts import standard_env
from executors.github.evaluate import Scope
from executors.github.masking import Masker
from executors.github.sandbox import JobSandbox
from executors.github.templates import evaluate_condition, evaluate_text, evaluate_tree
from schemas.common import StepStatus

SUCCESS, FAILURE, CANCELLED, SKIPPED = "success", "failure", "cancelled", "skipped"
DEFAULT_STEP_TIMEOUT = 360 * 60.0


class NeedHashes(Exception):
    """`hashFiles()` was called with patterns whose digest is not computed yet."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        super().__init__(", ".join(patterns))
        self.patterns = patterns


@dataclass
class StepResult:
    """How one step ended, as the `steps` context, its event and the result show it."""

    index: int
    id: str | None
    name: str
    outcome: str
    conclusion: str
    exit_code: int | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    duration_ms: int = 0
    error: dict[str, str] | None = None
    timed_out: bool = False
    steps: list[StepResult] = field(default_factory=list)
    tail: str = ""
    output_bytes: int = 0

    def status(self) -> StepStatus:
        """The step's status in the engine's terms."""
        if self.outcome == SKIPPED:
            return StepStatus.SKIPPED
        if self.outcome == CANCELLED:
            return StepStatus.CANCELLED
        if self.outcome == SUCCESS:
            return StepStatus.SUCCEEDED
        return StepStatus.TIMED_OUT if self.timed_out else StepStatus.FAILED

    def report(self) -> dict[str, Any]:
        """The step as the job's result lists it."""
        found: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "outcome": self.outcome,
            "conclusion": self.conclusion,
            "exit_code": self.exit_code,
            "outputs": self.outputs,
            "duration_ms": self.duration_ms,
        }
        if self.error is not None:
            found["error"] = self.error
        if self.steps:
            found["steps"] = [step.report() for step in self.steps]
        return found


@dataclass
class Frame:
    """A sequence of steps: the job's, or a composite action's (its own `steps` context,
    status, inputs and the env of the step that uses it)."""

    status: str = SUCCESS
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    action_path: str = ""
    action_repository: str = ""
    depth: int = 0

    def record(self, result: StepResult) -> None:
        """Enter a finished step into this frame's `steps` context and status."""
        if result.id:
            self.steps[result.id] = {
                "outputs": dict(result.outputs),
                "outcome": result.outcome,
                "conclusion": result.conclusion,
            }
        if result.conclusion == FAILURE and self.status == SUCCESS:
            self.status = FAILURE
        if result.outcome == CANCELLED:
            self.status = CANCELLED


@dataclass
class RunState:
    """The job-wide state of one run of a job's steps."""

    ctx: JobContext
    sandbox: JobSandbox
    masker: Masker
    contexts: dict[str, Any]
    layers: list[dict[str, str]]
    defaults: dict[str, Any]
    deadline: float
    limits: Limits
    actions_dir: str | None = None
    github_env: dict[str, str] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    annotations: list[dict[str, str]] = field(default_factory=list)
    counter: int = 0
    hashes: dict[tuple[str, ...], str] = field(default_factory=dict)
    tail_bytes: int = 16384

    def next_number(self) -> int:
        """A fresh number for a step's files."""
        self.counter += 1
        return self.counter

    def env_context(self, frame: Frame, step_env: dict[str, str] | None = None) -> dict[str, str]:
        """The `env` context: run, workflow and job env, `GITHUB_ENV`, the composite's
        and the step's own."""
        merged: dict[str, str] = {}
        for layer in self.layers:
            merged.update(layer)
        merged.update(self.github_env)
        merged.update(frame.env)
        merged.update(step_env or {})
        return merged

    def github(self, frame: Frame) -> dict[str, Any]:
        """The `github` context as a step of this frame sees it."""
        github = dict(self.contexts["github"])
        github["action_path"] = frame.action_path
        github["action_repository"] = frame.action_repository
        return github

    def scope(self, frame: Frame, step_env: dict[str, str] | None = None) -> Scope:
        """What a step's expressions may read."""
        contexts = dict(self.contexts)
        contexts["github"] = self.github(frame)
        contexts["env"] = self.env_context(frame, step_env)
        contexts["steps"] = frame.steps
        if frame.inputs is not None:
            contexts["inputs"] = frame.inputs
        return Scope(contexts, status=frame.status, hash_files=self._hash_files)

    def _hash_files(self, patterns: list[str]) -> str:
        key = tuple(patterns)
        if key not in self.hashes:
            raise NeedHashes(key)
        return self.hashes[key]

    async def evaluate(self, value: Any, scope: Scope, *, text: bool = False) -> Any:
        """Evaluate a raw value (a text or a tree), computing `hashFiles()` digests first
        when it asks for them."""
        for _ in range(8):
            try:
                return evaluate_text(value, scope) if text else evaluate_tree(value, scope)
            except NeedHashes as need:
                self.hashes[need.patterns] = await self.hash_workspace(list(need.patterns))
        return "" if text else None

    async def condition(self, raw: Any, scope: Scope) -> bool:
        """An `if:` condition, computing `hashFiles()` digests first when it asks."""
        for _ in range(8):
            try:
                return evaluate_condition(raw, scope)
            except NeedHashes as need:
                self.hashes[need.patterns] = await self.hash_workspace(list(need.patterns))
        return False

    async def hash_workspace(self, patterns: list[str]) -> str:
        """`hashFiles()`: SHA-256 over the SHA-256 of every matching file, in path order."""
        files = await self.sandbox.get_files("/github/workspace", limit=1 << 30)
        matched = sorted(name for name in files if matches(name, patterns))
        if not matched:
            return ""
        digest = hashlib.sha256()
        for name in matched:
            digest.update(hashlib.sha256(files[name]).digest())
        return digest.hexdigest()

    def process_env(
        self, frame: Frame, step_env: dict[str, str], files: dict[str, str]
    ) -> dict[str, str]:
        """The variables a step's process gets."""
        github = self.github(frame)
        env = standard_env(github, self.contexts["runner"])
        env.update(self.env_context(frame, step_env))
        base_path = env.get("PATH") or self.sandbox.placed.image_path
        env["PATH"] = ":".join([*self.paths, base_path])
        env.update(files)
        if frame.action_path:
            env["GITHUB_ACTION_PATH"] = frame.action_path
            env["GITHUB_ACTION_REPOSITORY"] = frame.action_repository
        return env

    def remaining(self) -> float:
        """Seconds left before the job's timeout."""
        return self.deadline - time.monotonic()


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A `hashFiles()` glob (`**` crosses directories) as a regular expression."""
    pattern = pattern.strip().removeprefix("./").removeprefix("/github/workspace/")
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    out = []
    for part in parts:
        if part in ("**", "**/"):
            out.append(".*")
        elif part == "*":
            out.append("[^/]*")
        elif part == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(part))
    return re.compile("^" + "".join(out) + "$")


def matches(name: str, patterns: list[str]) -> bool:
    """Whether a workspace path matches the patterns (a `!pattern` excludes)."""
    keep = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if glob_regex(pattern.lstrip("!")).match(name) or fnmatch.fnmatch(
            name, pattern.lstrip("!")
        ):
            keep = not negate
    return keep


def text_of(value: Any) -> str:
    """A value as a string (for env values and outputs)."""
    return v.to_string(value)
