"""Shells of `run` steps: GitHub's templates and custom `{0}` templates. Pure."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from executors.github.errors import WorkflowInvalid

TEMPLATES = {
    "bash": ("bash --noprofile --norc -eo pipefail {0}", ".sh"),
    "sh": ("sh -e {0}", ".sh"),
    "python": ("python3 {0}", ".py"),
    "pwsh": ("pwsh -command \". '{0}'\"", ".ps1"),
    "powershell": ("pwsh -command \". '{0}'\"", ".ps1"),
}
# No `shell:` at all: bash when the container has it, else sh.
DEFAULT_BASH = "bash -e {0}"
DEFAULT_SH = "sh -e {0}"


@dataclass(frozen=True)
class ShellCommand:
    """How to run a step's script."""

    argv: tuple[str, ...]
    extension: str
    shell: str


def shell_template(shell: str | None, *, has_bash: bool) -> tuple[str, str, str]:
    """(template, script extension, shell name) of a `shell:` value (None: the default)."""
    if shell is None or shell == "":
        return (DEFAULT_BASH, ".sh", "bash") if has_bash else (DEFAULT_SH, ".sh", "sh")
    known = TEMPLATES.get(shell)
    if known is not None:
        return known[0], known[1], shell
    if "{0}" not in shell:
        raise WorkflowInvalid(
            f"shell {shell!r} is not supported: use bash, sh, python, or a template with {{0}}"
        )
    return shell, "", shell.split()[0]


def shell_command(shell: str | None, script_path: str, *, has_bash: bool) -> ShellCommand:
    """The argv that runs the script at `script_path` with the shell."""
    template, extension, name = shell_template(shell, has_bash=has_bash)
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise WorkflowInvalid(f"shell {shell!r} cannot be parsed: {exc}") from exc
    argv = tuple(word.replace("{0}", script_path) for word in words)
    return ShellCommand(argv=argv, extension=extension, shell=name)
