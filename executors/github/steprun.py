"""Running one step: its `if`, environment and expressions, then a `run` script, a local
or provided action (composite, node, docker), a `docker://` image or `actions/checkout`;
afterwards its workflow commands and environment files."""

from __future__ import annotations

import asyncio
import posixpath
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from executors.github import values as v
from executors.github.actions import (
    ActionDefinition,
    ActionRef,
    action_inputs,
    input_env,
    parse_action,
    parse_uses,
)
from executors.github.commands import CommandStream, EnvFileError, parse_env_file, parse_path_file
from executors.github.contexts import FILE_COMMANDS, TEMP, WORKSPACE
from executors.github.errors import ActionUnavailable, WorkflowError, WorkflowInvalid
from executors.github.output import StepOutput
from executors.github.provided import provided_action
from executors.github.shells import shell_command, shell_template
from executors.github.state import (
    CANCELLED,
    DEFAULT_STEP_TIMEOUT,
    FAILURE,
    SKIPPED,
    SUCCESS,
    Frame,
    RunState,
    StepResult,
)
from executors.github.workflow import Step
from executors.sandbox_exec import CommandRun
from executors.sandbox_spec import TIMED_OUT_EXIT

MAX_DEPTH = 10
FILES = {
    "output": "GITHUB_OUTPUT",
    "env": "GITHUB_ENV",
    "path": "GITHUB_PATH",
    "state": "GITHUB_STATE",
    "summary": "GITHUB_STEP_SUMMARY",
}


@dataclass
class Prepared:
    """A step's evaluated fields."""

    name: str
    env: dict[str, str]
    timeout: float
    continue_on_error: bool


class StepFailed(WorkflowError):
    """A step could not run (its action is invalid or unavailable): fails the step."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class StepRunner:
    """Runs steps of a job (or of a composite action) on its sandbox."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    async def condition(self, step: Step, frame: Frame) -> bool:
        """A step's `if:`; ExpressionError propagates (it fails the job)."""
        return await self.state.condition(step.if_, self.state.scope(frame))

    async def prepare(self, step: Step, frame: Frame) -> Prepared:
        """Evaluate a step's env, name, timeout and continue-on-error."""
        state = self.state
        raw_env = await state.evaluate(step.env or {}, state.scope(frame))
        if not isinstance(raw_env, Mapping):
            raise WorkflowInvalid(f"step {step.index}: `env` must be a mapping")
        env = {str(k): v.to_string(val) for k, val in raw_env.items()}
        scope = state.scope(frame, env)
        name = await state.evaluate(step.name, scope, text=True) if step.name else ""
        timeout = DEFAULT_STEP_TIMEOUT
        if step.timeout_minutes is not None:
            minutes = v.to_number(await state.evaluate(step.timeout_minutes, scope))
            if minutes == minutes and minutes > 0:
                timeout = minutes * 60
        keep_going = v.truthy(await state.evaluate(step.continue_on_error, scope))
        return Prepared(name or step.display_name(), env, timeout, keep_going)

    async def run(self, step: Step, frame: Frame) -> StepResult:
        """Run one step (its `if` says whether) and enter it into the frame."""
        began = time.monotonic()
        if not await self.condition(step, frame):
            result = StepResult(step.index, step.id, step.display_name(), SKIPPED, SKIPPED)
            frame.record(result)
            return result
        prepared = await self.prepare(step, frame)
        await self.state.ctx.log("system", f"==> {prepared.name}\n".encode())
        result = StepResult(step.index, step.id, prepared.name, SUCCESS, SUCCESS)
        try:
            await self._dispatch(step, frame, prepared, result)
        except StepFailed as exc:
            await self._note(f"##[error]{exc}")
            result.outcome, result.error = FAILURE, {"code": exc.code, "message": str(exc)}
        except asyncio.CancelledError:
            result.outcome = result.conclusion = CANCELLED
            result.duration_ms = int((time.monotonic() - began) * 1000)
            frame.record(result)
            raise
        if result.outcome == FAILURE:
            result.conclusion = SUCCESS if prepared.continue_on_error else FAILURE
        result.duration_ms = int((time.monotonic() - began) * 1000)
        result.outputs = self.state.masker.mask_tree(result.outputs)
        frame.record(result)
        return result

    async def _note(self, text: str) -> None:
        await self.state.ctx.log("system", (self.state.masker.mask(text) + "\n").encode())

    async def _dispatch(
        self, step: Step, frame: Frame, prepared: Prepared, result: StepResult
    ) -> None:
        if step.run is not None:
            await self._script(step, frame, prepared, result)
            return
        assert step.uses is not None
        try:
            ref = parse_uses(step.uses)
        except WorkflowInvalid as exc:
            raise StepFailed("invalid_action", str(exc)) from exc
        if ref.kind == "checkout":
            await self._checkout(step, frame, prepared, ref)
        elif ref.kind == "docker":
            await self._docker(ref.image, step, frame, prepared, result, None, "")
        else:
            await self._action(ref, step, frame, prepared, result)

    # --- run scripts ---------------------------------------------------------------------

    async def _script(
        self, step: Step, frame: Frame, prepared: Prepared, result: StepResult
    ) -> None:
        state = self.state
        scope = state.scope(frame, prepared.env)
        script = await state.evaluate(step.run, scope, text=True)
        defaults = state.defaults if frame.depth == 0 else {}
        shell_raw = step.shell if step.shell is not None else defaults.get("shell")
        shell = await state.evaluate(shell_raw, scope, text=True) if shell_raw else None
        workdir_raw = step.working_directory
        if workdir_raw is None and frame.depth == 0:
            workdir_raw = defaults.get("working-directory")
        workdir = await state.evaluate(workdir_raw, scope, text=True) if workdir_raw else ""
        number = state.next_number()
        has_bash = state.sandbox.placed.has_bash
        _, extension, _ = shell_template(shell or None, has_bash=has_bash)
        script_path = f"{TEMP}/{number}{extension}"
        command = shell_command(shell or None, script_path, has_bash=has_bash)
        scripts = {f"runner_temp/{number}{extension}": script.encode()}
        await self._exec(list(command.argv), frame, prepared, result, number, scripts, workdir)

    async def _exec(
        self,
        argv: list[str],
        frame: Frame,
        prepared: Prepared,
        result: StepResult,
        number: int,
        extra: dict[str, bytes],
        workdir: str,
        env_more: dict[str, str] | None = None,
        image: str | None = None,
    ) -> None:
        """Run a process for the step with fresh environment files, then read them."""
        state = self.state
        directory = f"{FILE_COMMANDS}/{number}"
        files = {f"file_commands/{number}/{name}": b"" for name in FILES}
        await state.sandbox.put_files("/github", {**files, **extra})
        paths = {variable: f"{directory}/{name}" for name, variable in FILES.items()}
        env = state.process_env(frame, {**prepared.env, **(env_more or {})}, paths)
        allow = v.truthy(env.get("ACTIONS_ALLOW_UNSECURE_COMMANDS", "").lower() == "true")
        sink = StepOutput(
            state.ctx.log, state.masker, CommandStream(allow_unsecure=allow), state.tail_bytes
        )
        timeout = max(min(prepared.timeout, state.remaining()), 0.001)
        cwd = posixpath.normpath(posixpath.join(WORKSPACE, workdir)) if workdir else WORKSPACE
        try:
            if image is None:
                run = await state.sandbox.run(
                    argv, env=env, workdir=cwd, timeout=timeout, sink=sink.write
                )
            else:
                run = await state.sandbox.run_image(
                    image,
                    argv,
                    env=env,
                    timeout=timeout,
                    sink=sink.write,
                    limits=state.limits,
                    progress=self._progress,
                )
        finally:
            await sink.flush()
        await self._after(run, sink, directory, result)

    async def _progress(self, line: str) -> None:
        await self.state.ctx.log("system", (line + "\n").encode())

    async def _after(
        self, run: CommandRun, sink: StepOutput, directory: str, result: StepResult
    ) -> None:
        state = self.state
        effects = sink.commands.effects
        result.exit_code = run.exit_code
        result.tail = sink.tail.text()
        result.output_bytes = sink.tail.total
        result.timed_out = run.timed_out
        written = await state.sandbox.get_files(directory)
        try:
            outputs = {
                **effects.outputs,
                **parse_env_file(_text(written.get("output")), "GITHUB_OUTPUT"),
            }
            env = {**effects.env, **parse_env_file(_text(written.get("env")), "GITHUB_ENV")}
        except EnvFileError as exc:
            await self._note(f"##[error]{exc}")
            outputs, env = dict(effects.outputs), dict(effects.env)
            run.exit_code = run.exit_code or 1
        result.outputs.update(outputs)
        state.github_env.update(env)
        added = effects.paths + parse_path_file(_text(written.get("path")))
        state.paths[:0] = list(reversed(added))
        summary = _text(written.get("summary"))
        if summary.strip():
            state.summary.append(state.masker.mask(summary))
        state.annotations.extend(state.masker.mask_tree(effects.annotations))
        if run.timed_out:
            await self._note(f"##[error]The step timed out (exit {TIMED_OUT_EXIT}) and was killed")
        if run.exit_code != 0:
            result.outcome = FAILURE
            await self._note(f"##[error]Process completed with exit code {run.exit_code}.")

    # --- actions ---------------------------------------------------------------------------

    async def _checkout(self, step: Step, frame: Frame, prepared: Prepared, ref: ActionRef) -> None:
        scope = self.state.scope(frame, prepared.env)
        given = await self.state.evaluate(step.with_, scope)
        repository = v.to_string(given.get("repository")) if isinstance(given, Mapping) else ""
        ours = v.to_string(self.state.contexts["github"].get("repository"))
        if repository and repository.casefold() != ours.casefold():
            raise StepFailed(
                "action_unavailable",
                f"{ref.uses}: cannot fetch {repository} offline; only this repository, which is"
                " already in the workspace",
            )
        await self._note(f"{ref.uses}: the repository is already in the workspace ({WORKSPACE})")

    async def _action(
        self, ref: ActionRef, step: Step, frame: Frame, prepared: Prepared, result: StepResult
    ) -> None:
        if frame.depth >= MAX_DEPTH:
            raise StepFailed(
                "invalid_action", f"{ref.uses}: actions nested more than {MAX_DEPTH} deep"
            )
        if ref.kind == "local":
            action_path = posixpath.join(WORKSPACE, ref.path) if ref.path else WORKSPACE
            repository = ""
        else:
            action_path = await self._provide(ref)
            repository = f"{ref.owner}/{ref.repo}"
        definition = await self._definition(ref, action_path)
        scope = self.state.scope(frame, prepared.env)
        given = await self.state.evaluate(step.with_, scope)
        given = dict(given) if isinstance(given, Mapping) else {}
        raw_inputs = action_inputs(definition, given)
        inputs = {
            name: await self.state.evaluate(value, scope) for name, value in raw_inputs.items()
        }
        if definition.using == "composite":
            await self._composite(
                definition, frame, prepared, result, inputs, action_path, repository
            )
        elif definition.using == "docker":
            await self._docker_action(
                definition, step, frame, prepared, result, inputs, action_path
            )
        else:
            await self._node(definition, frame, prepared, result, inputs, action_path)

    async def _provide(self, ref: ActionRef) -> str:
        found = provided_action(self.state.actions_dir, ref)
        if found is None:
            where = "CHASER_ACTIONS_DIR" if self.state.actions_dir else "no CHASER_ACTIONS_DIR"
            error = ActionUnavailable(
                ref.uses, f"remote actions are not fetched ({where} has none)"
            )
            raise StepFailed("action_unavailable", str(error))
        relative = f"actions/{ref.owner}/{ref.repo}@{ref.ref}"
        target = f"/github/{relative}"
        files = {f"{relative}/{name}": data for name, data in found.items()}
        await self.state.sandbox.put_files("/github", files, mode=0o755)
        return posixpath.join(target, ref.path) if ref.path else target

    async def _definition(self, ref: ActionRef, action_path: str) -> ActionDefinition:
        for name in ("action.yml", "action.yaml"):
            files = await self.state.sandbox.get_files(posixpath.join(action_path, name))
            if files:
                text = next(iter(files.values())).decode("utf-8", "replace")
                try:
                    return parse_action(text, posixpath.join(ref.uses, name))
                except WorkflowInvalid as exc:
                    raise StepFailed("invalid_action", str(exc)) from exc
        raise StepFailed(
            "action_unavailable" if ref.kind == "local" else "invalid_action",
            f"{ref.uses}: no action.yml or action.yaml in {action_path}",
        )

    async def _composite(
        self,
        definition: ActionDefinition,
        frame: Frame,
        prepared: Prepared,
        result: StepResult,
        inputs: dict[str, Any],
        action_path: str,
        repository: str,
    ) -> None:
        inner = Frame(
            status=frame.status,
            env={**frame.env, **prepared.env},
            inputs=inputs,
            action_path=action_path,
            action_repository=repository,
            depth=frame.depth + 1,
        )
        for step in definition.steps:
            child = await self.run(step, inner)
            result.steps.append(child)
        if inner.status != SUCCESS:
            result.outcome = FAILURE
        scope = self.state.scope(inner)
        for name, spec in definition.outputs.items():
            raw = spec.get("value") if isinstance(spec, Mapping) else spec
            result.outputs[name] = await self.state.evaluate(raw, scope, text=True)

    async def _node(
        self,
        definition: ActionDefinition,
        frame: Frame,
        prepared: Prepared,
        result: StepResult,
        inputs: dict[str, Any],
        action_path: str,
    ) -> None:
        number = self.state.next_number()
        env = {input_env(k): v.to_string(val) for k, val in inputs.items()}
        main = posixpath.join(action_path, definition.main)
        inner = Frame(
            status=frame.status, env=frame.env, action_path=action_path, depth=frame.depth
        )
        await self._exec(["node", main], inner, prepared, result, number, {}, "", env)

    async def _docker_action(
        self,
        definition: ActionDefinition,
        step: Step,
        frame: Frame,
        prepared: Prepared,
        result: StepResult,
        inputs: dict[str, Any],
        action_path: str,
    ) -> None:
        if not definition.image.startswith("docker://"):
            raise StepFailed(
                "action_unavailable",
                f"{step.uses}: building {definition.image} is not supported; use a docker:// image",
            )
        scope = self.state.scope(frame, prepared.env).with_contexts(inputs=inputs)
        args = [v.to_string(await self.state.evaluate(a, scope)) for a in definition.args]
        env = {input_env(k): v.to_string(val) for k, val in inputs.items()}
        await self._docker(
            definition.image.removeprefix("docker://"),
            step,
            frame,
            prepared,
            result,
            (definition.entrypoint, args),
            action_path,
            env,
        )

    async def _docker(
        self,
        image: str,
        step: Step,
        frame: Frame,
        prepared: Prepared,
        result: StepResult,
        command: tuple[str, list[str]] | None,
        action_path: str,
        env: dict[str, str] | None = None,
    ) -> None:
        scope = self.state.scope(frame, prepared.env)
        if command is None:
            given = await self.state.evaluate(step.with_, scope)
            given = given if isinstance(given, Mapping) else {}
            args = shlex.split(v.to_string(given.get("args"))) if given.get("args") else []
            command = (v.to_string(given.get("entrypoint") or ""), args)
        await self.state.sandbox.ensure_image(image, self._progress)
        argv = await self.state.sandbox.image_command(image, command[0], command[1])
        if not argv:
            raise StepFailed("invalid_action", f"{image} has no entrypoint or command to run")
        number = self.state.next_number()
        await self._exec(argv, frame, prepared, result, number, {}, "", env, image=image)


def _text(data: bytes | None) -> str:
    return data.decode("utf-8", "replace") if data else ""


__all__ = ["CANCELLED", "StepFailed", "StepRunner"]
