"""Workflow commands a step prints (`::add-mask::`, `::set-output name=x::v`, ...) and the
environment files it writes (`GITHUB_ENV`, `GITHUB_OUTPUT`, `GITHUB_PATH`, ...). Pure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from executors.github.errors import WorkflowError

_COMMAND = re.compile(r"^::(?P<name>[A-Za-z-]+)(?: (?P<props>[^:]*?))?::(?P<data>.*)$")
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROP_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
ANNOTATIONS = frozenset({"error", "warning", "notice", "debug"})
UNSECURE = frozenset({"set-env", "add-path"})


class EnvFileError(WorkflowError):
    """An environment file is malformed."""

    code = "invalid_env_file"


@dataclass(frozen=True)
class Command:
    """One workflow command."""

    name: str
    properties: dict[str, str]
    data: str


def _unescape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for escaped, plain in table:
        text = text.replace(escaped, plain)
    return text


def parse_command(line: str) -> Command | None:
    """A workflow command from one output line, or None."""
    match = _COMMAND.match(line.rstrip("\r\n").lstrip())
    if match is None:
        return None
    props: dict[str, str] = {}
    for part in (match.group("props") or "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            props[key.strip()] = _unescape(value, _PROP_ESCAPES)
    return Command(
        match.group("name").lower(), props, _unescape(match.group("data"), _DATA_ESCAPES)
    )


@dataclass
class CommandEffects:
    """What the commands of one step asked for."""

    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    paths: list[str] = field(default_factory=list)
    state: dict[str, str] = field(default_factory=dict)
    masks: list[str] = field(default_factory=list)
    annotations: list[dict[str, str]] = field(default_factory=list)


class CommandStream:
    """Reads a step's output lines and collects the effects of its commands; honours
    `::stop-commands::TOKEN` ... `::TOKEN::`."""

    def __init__(self, *, allow_unsecure: bool) -> None:
        self.allow_unsecure = allow_unsecure
        self.effects = CommandEffects()
        self._stopped_until: str | None = None

    def feed(self, line: str) -> Command | None:
        """Process one line; the command it held, if any was acted on."""
        if self._stopped_until is not None:
            if line.strip() == f"::{self._stopped_until}::":
                self._stopped_until = None
            return None
        command = parse_command(line)
        if command is None:
            return None
        self._apply(command)
        return command

    def _apply(self, command: Command) -> None:
        effects = self.effects
        name, data, props = command.name, command.data, command.properties
        if name == "add-mask":
            if data.strip():
                effects.masks.append(data.strip())
        elif name == "stop-commands":
            self._stopped_until = data or None
        elif name == "set-output" and "name" in props:
            effects.outputs[props["name"]] = data
        elif name == "save-state" and "name" in props:
            effects.state[props["name"]] = data
        elif name in UNSECURE:
            self._unsecure(command)
        elif name in ANNOTATIONS:
            effects.annotations.append({"level": name, "message": data, **props})

    def _unsecure(self, command: Command) -> None:
        effects = self.effects
        if not self.allow_unsecure:
            message = (
                f"The `{command.name}` command is disabled. Set ACTIONS_ALLOW_UNSECURE_COMMANDS"
                " to true to enable it."
            )
            effects.annotations.append({"level": "error", "message": message})
        elif command.name == "set-env" and "name" in command.properties:
            effects.env[command.properties["name"]] = command.data
        elif command.name == "add-path" and command.data:
            effects.paths.append(command.data)


def parse_env_file(text: str, what: str = "GITHUB_ENV") -> dict[str, str]:
    """`NAME=value` lines and `NAME<<DELIMITER` heredocs, as GitHub's runner reads them."""
    lines = text.replace("\r\n", "\n").split("\n")
    found: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if line == "":
            continue
        equals, heredoc = line.find("="), line.find("<<")
        if equals >= 0 and (heredoc < 0 or equals < heredoc):
            name, value = line[:equals], line[equals + 1 :]
        elif heredoc >= 0:
            name, delimiter = line[:heredoc], line[heredoc + 2 :]
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                raise EnvFileError(f"{what}: no closing delimiter {delimiter!r} for {name!r}")
            index += 1
            value = "\n".join(body)
        else:
            raise EnvFileError(f"{what}: invalid line {line!r} (expected NAME=value)")
        if not name:
            raise EnvFileError(f"{what}: a line has no name: {line!r}")
        found[name] = value
    return found


def parse_path_file(text: str) -> list[str]:
    """The directories a step added to `GITHUB_PATH`, in the order written."""
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]
