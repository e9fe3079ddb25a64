"""A step's output on its way to the job's log: cut into lines, workflow commands acted on,
secrets and masked values replaced, a bounded tail kept for the step's event."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from executors.github.commands import CommandStream
from executors.github.masking import MASK, Masker
from executors.sandbox_spec import OutputTail

Log = Callable[[str, bytes], Awaitable[None]]
MAX_LINE = 64 * 1024


class StepOutput:
    """The sink of one step's output streams."""

    def __init__(self, log: Log, masker: Masker, commands: CommandStream, tail_bytes: int) -> None:
        self._log = log
        self._masker = masker
        self.commands = commands
        self.tail = OutputTail(tail_bytes)
        self._pending: dict[str, bytes] = {}

    async def write(self, channel: str, data: bytes) -> None:
        """A chunk of a stream: complete lines go out at once, the rest waits."""
        buffered = self._pending.get(channel, b"") + data
        lines = buffered.split(b"\n")
        rest = lines.pop()
        if len(rest) > MAX_LINE:
            lines.append(rest)
            rest = b""
        self._pending[channel] = rest
        if lines:
            await self._emit(channel, [line.decode("utf-8", "replace") for line in lines])

    async def flush(self) -> None:
        """Emit what is left of unfinished lines."""
        for channel, rest in list(self._pending.items()):
            if rest:
                await self._emit(channel, [rest.decode("utf-8", "replace")], newline=False)
        self._pending.clear()

    async def note(self, text: str) -> None:
        """A line of the runner's own (masked) on the system channel."""
        line = self._masker.mask(text) + "\n"
        await self._log("system", line.encode())

    async def _emit(self, channel: str, lines: list[str], newline: bool = True) -> None:
        shown = []
        for line in lines:
            command = self.commands.feed(line)
            if command is not None and command.name == "add-mask":
                for value in self.commands.effects.masks:
                    self._masker.add(value)
                shown.append(f"::add-mask::{MASK}")
                continue
            shown.append(self._masker.mask(line))
        text = "\n".join(shown) + ("\n" if newline else "")
        data = text.encode()
        self.tail.add(data)
        await self._log(channel, data)
