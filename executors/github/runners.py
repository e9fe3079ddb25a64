"""Runner label sets from `CHASER_RUNNERS`, and matching `runs-on` against them. Pure.

Format: runners separated by `;`, each a comma-separated list of labels and options:

    CHASER_RUNNERS="self-hosted,linux,x64,chaser=IMAGE;gpu,linux,chaser=IMAGE2,capacity=2"

`chaser=IMAGE` is the image the runner's jobs run in (default: the deployment's default
image), `name=NAME` its name (default `chaser-N`), `capacity=N` how many jobs it runs at
once (default 1), `group=G` the runner group (`runs-on: {group: G}`). Every other item is
a label; labels compare without regard to case. Empty: one runner
`self-hosted,linux,x64` on the default image.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from executors.github.errors import WorkflowError

DEFAULT_LABELS = ("self-hosted", "linux", "x64")
MAX_CAPACITY = 256


class RunnerConfigError(WorkflowError):
    """`CHASER_RUNNERS` is malformed."""

    code = "invalid_runner_config"


@dataclass(frozen=True)
class RunnerSpec:
    """One configured runner."""

    name: str
    labels: tuple[str, ...]
    image: str
    capacity: int = 1

    def serves(self, wanted: Iterable[str]) -> bool:
        """Whether the runner has every wanted label."""
        mine = {label.casefold() for label in self.labels}
        return all(label.casefold() in mine for label in wanted)


def _runner(text: str, index: int, default_image: str) -> RunnerSpec:
    labels: list[str] = []
    options = {"name": f"chaser-{index + 1}", "chaser": default_image, "capacity": "1"}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep:
            labels.append(item)
        elif key == "group":
            labels.append(f"group:{value}")
        elif key in options and value:
            options[key] = value
        else:
            raise RunnerConfigError(
                f"CHASER_RUNNERS: unknown option {item!r} in runner {index + 1}"
            )
    capacity = options["capacity"]
    if not capacity.isdigit() or not 1 <= int(capacity) <= MAX_CAPACITY:
        raise RunnerConfigError(f"CHASER_RUNNERS: capacity {capacity!r} is not 1 to {MAX_CAPACITY}")
    return RunnerSpec(
        name=options["name"],
        labels=tuple(labels or DEFAULT_LABELS),
        image=options["chaser"],
        capacity=int(capacity),
    )


def parse_runners(text: str, default_image: str) -> tuple[RunnerSpec, ...]:
    """The runners `CHASER_RUNNERS` describes; RunnerConfigError when malformed."""
    parts = [part.strip() for part in text.replace("\n", ";").split(";") if part.strip()]
    if not parts:
        return (RunnerSpec(name="chaser-1", labels=DEFAULT_LABELS, image=default_image),)
    runners = tuple(_runner(part, index, default_image) for index, part in enumerate(parts))
    names = [r.name for r in runners]
    if len(set(names)) != len(names):
        raise RunnerConfigError("CHASER_RUNNERS: runner names must differ")
    return runners


def pick(
    runners: Iterable[RunnerSpec], wanted: list[str], running: dict[str, int]
) -> RunnerSpec | None:
    """The runner with every wanted label and a free slot (the least loaded), or None."""
    free = [r for r in runners if r.serves(wanted) and running.get(r.name, 0) < r.capacity]
    if not free:
        return None
    return min(free, key=lambda r: (running.get(r.name, 0) / r.capacity, r.name))
