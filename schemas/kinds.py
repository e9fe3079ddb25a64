"""Job kinds and the input each accepts; `GET /v1/jobs/kinds` serves their JSON Schemas."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Name = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
]
Command = Annotated[str, msgspec.Meta(min_length=1, max_length=65536)]
TimeoutMs = Annotated[int, msgspec.Meta(ge=1, le=86_400_000)]


class Input(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Base of every kind's input: clients' commands refuse unknown fields."""


class SystemEchoInput(Input, frozen=True, kw_only=True):
    """Return `message` as the result, after `sleep_ms`; fail on purpose when `fail` is set."""

    message: Any = None
    sleep_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)] = 0
    fail: bool = False
    retriable: bool = False


class SandboxExecInput(Input, frozen=True, kw_only=True):
    """Run a shell command in a workspace-backed or ephemeral sandbox."""

    command: Command
    workspace: Name | None = None
    ephemeral: bool = False
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    session_id: str | None = None
    env: dict[str, str] = {}
    timeout_ms: TimeoutMs | None = None
    workdir: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    stdin: Annotated[str, msgspec.Meta(max_length=1_048_576)] | None = None
    cpu: Annotated[float, msgspec.Meta(gt=0, le=64)] | None = None
    memory_mb: Annotated[int, msgspec.Meta(ge=4, le=1_048_576)] | None = None
    pids: Annotated[int, msgspec.Meta(ge=1, le=65536)] | None = None
    network: Literal["none", "bridge"] | None = None

    def __post_init__(self) -> None:
        if self.session_id is None and self.ephemeral == (self.workspace is not None):
            raise ValueError("give either `workspace` or `ephemeral: true` (with `image`)")
        if self.ephemeral and self.image is None:
            raise ValueError("`image` is required when `ephemeral` is true")


class PipelineStep(Input, frozen=True, kw_only=True):
    """One command of a pipeline."""

    command: Command
    name: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    timeout_ms: TimeoutMs | None = None
    continue_on_error: bool = False
    env: dict[str, str] = {}


class PipelineRunInput(Input, frozen=True, kw_only=True):
    """Run ordered steps on one shared workspace."""

    workspace: Name
    steps: Annotated[list[PipelineStep], msgspec.Meta(min_length=1, max_length=256)]
    image: Annotated[str, msgspec.Meta(min_length=1, max_length=256)] | None = None
    session_id: str | None = None
    env: dict[str, str] = {}


class BrowserScrapeInput(Input, frozen=True, kw_only=True):
    """Navigate to a URL and optionally extract content."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=8192)]
    selector: Annotated[str, msgspec.Meta(min_length=1, max_length=4096)] | None = None
    all: bool = True
    html: bool = False
    attributes: bool = False
    wait_until: Literal["load", "domcontentloaded", "networkidle"] = "load"
    wait_for_selector: Annotated[str, msgspec.Meta(max_length=4096)] | None = None
    timeout_ms: TimeoutMs | None = None
    screenshot: bool = False
    session_id: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError("`url` must be an http or https URL")


class CdpAction(Input, frozen=True, kw_only=True):
    """One Chrome DevTools Protocol call."""

    method: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Za-z]*\.[a-zA-Z]+$")]
    params: dict[str, Any] = {}
    wait_for: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    timeout_ms: TimeoutMs | None = None


class BrowserActionInput(Input, frozen=True, kw_only=True):
    """Execute sequential CDP method calls on the job's page."""

    actions: Annotated[list[CdpAction], msgspec.Meta(min_length=1, max_length=512)]
    stop_on_error: bool = True
    session_id: str | None = None
    keep_session: bool = False
    timeout_ms: TimeoutMs | None = None


class GithubRunnerInput(Input, frozen=True, kw_only=True):
    """Run one job of a GitHub Actions workflow on a runner whose labels match `runs-on`."""

    workspace: Name
    workflow: Annotated[str, msgspec.Meta(max_length=1_048_576)] | None = None
    workflow_path: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    job: Annotated[str, msgspec.Meta(max_length=256)] | None = None
    event_name: str = "push"
    event: dict[str, Any] = {}
    ref: str | None = None
    sha: str | None = None
    repository: str | None = None
    actor: str | None = None
    inputs: dict[str, Any] = {}
    env: dict[str, str] = {}
    secrets: dict[str, str] = {}
    vars: dict[str, str] = {}
    matrix: dict[str, Any] | None = None
    needs: dict[str, Any] = {}
    queue_timeout_ms: TimeoutMs | None = None
    # Set by the engine when it stores the job: `secrets` moved out of the event log.
    secrets_ref: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    secret_names: list[str] = []
    # Whole-workflow runs (`chaser runner run-workflow`): the run's identity, whether this
    # workflow runs as a reusable-workflow call (its `workflow_call` inputs apply), and the
    # status of every job this one needs transitively (`success`, `failure`, `cancelled`,
    # `skipped`), which job-level `success()`/`failure()` read.
    run_id: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    run_number: Annotated[int, msgspec.Meta(ge=1)] = 1
    run_attempt: Annotated[int, msgspec.Meta(ge=1)] = 1
    workflow_call: bool = False
    needs_status: Literal["success", "failure", "cancelled", "skipped"] | None = None

    def __post_init__(self) -> None:
        if (self.workflow is None) == (self.workflow_path is None):
            raise ValueError("give exactly one of `workflow` or `workflow_path`")


class SessionTerminateInput(Input, frozen=True, kw_only=True):
    """Terminate one session."""

    session_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class SessionBulkTerminateInput(Input, frozen=True, kw_only=True):
    """Terminate listed sessions, all of them, or those idle for `idle_for_ms`."""

    session_ids: list[str] | None = None
    all: bool = False
    idle_for_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None

    def __post_init__(self) -> None:
        chosen = [self.session_ids is not None, self.all, self.idle_for_ms is not None]
        if sum(chosen) != 1:
            raise ValueError("give exactly one of `session_ids`, `all: true` or `idle_for_ms`")


class WorkspaceDeleteInput(Input, frozen=True, kw_only=True):
    """Delete one workspace."""

    workspace: Name


class WorkspaceBulkDeleteInput(Input, frozen=True, kw_only=True):
    """Delete listed workspaces, or all of the account's."""

    workspaces: list[Name] | None = None
    all: bool = False

    def __post_init__(self) -> None:
        if (self.workspaces is not None) == self.all:
            raise ValueError("give either `workspaces` or `all: true`")


class KindSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A job kind: its name, what it does, its input type and the executor family serving it."""

    name: str
    description: str
    input_type: type[Input]
    family: str


KINDS: dict[str, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec(
            name="sandbox.exec",
            description="Run a command in a sandbox (workspace-backed or ephemeral)",
            input_type=SandboxExecInput,
            family="sandbox",
        ),
        KindSpec(
            name="pipeline.run",
            description="Execute ordered steps on a shared workspace",
            input_type=PipelineRunInput,
            family="sandbox",
        ),
        KindSpec(
            name="browser.action",
            description="Execute sequential CDP method calls",
            input_type=BrowserActionInput,
            family="browser",
        ),
        KindSpec(
            name="browser.scrape",
            description="Navigate to a URL and optionally extract content",
            input_type=BrowserScrapeInput,
            family="browser",
        ),
        KindSpec(
            name="github.runner",
            description="Execute GitHub Actions workflow jobs via self-hosted runner labels",
            input_type=GithubRunnerInput,
            family="github",
        ),
        KindSpec(
            name="session.terminate",
            description="Terminate a session",
            input_type=SessionTerminateInput,
            family="lifecycle",
        ),
        KindSpec(
            name="session.bulk_terminate",
            description="Terminate multiple sessions",
            input_type=SessionBulkTerminateInput,
            family="lifecycle",
        ),
        KindSpec(
            name="workspace.delete",
            description="Delete a workspace",
            input_type=WorkspaceDeleteInput,
            family="lifecycle",
        ),
        KindSpec(
            name="workspace.bulk_delete",
            description="Delete multiple workspaces",
            input_type=WorkspaceBulkDeleteInput,
            family="lifecycle",
        ),
        KindSpec(
            name="system.echo",
            description="Return the input message as the result (engine canary, no sandbox)",
            input_type=SystemEchoInput,
            family="system",
        ),
    )
}


def input_schema(spec: KindSpec) -> dict[str, Any]:
    """The JSON Schema of a kind's input, with its definitions inlined under `$defs`."""
    schema: dict[str, Any] = msgspec.json.schema(spec.input_type)
    return schema


def validate_input(kind: str, raw: Any) -> Input:
    """Convert a JSON value to the kind's input type; raises msgspec.ValidationError."""
    return msgspec.convert(raw, KINDS[kind].input_type, strict=True)
