"""Dependencies point inward: the schemas and the pure state machine import no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE_ENGINE = ("fold.py", "decide.py", "errors.py", "subjects.py")
PURE_MODULES = sorted(
    [ROOT / "engine" / name for name in PURE_ENGINE] + list((ROOT / "schemas").glob("*.py"))
)
PURE_NAMES = {
    ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    for path in PURE_MODULES
}

FORBIDDEN = frozenset(
    {
        # the shell's libraries
        "nats",
        "aiodocker",
        "websockets",
        "litestar",
        "structlog",
        "asyncio",
        "httpx",
        # I/O, processes and threads
        "socket",
        "subprocess",
        "os",
        "shutil",
        "io",
        "urllib",
        "http",
        "ssl",
        "select",
        "selectors",
        "threading",
        "multiprocessing",
        "concurrent",
        # imports that would hide any of the above from this check
        "importlib",
        # clocks and randomness come in as arguments
        "time",
        "uuid",
        "random",
        "secrets",
    }
)
CLOCK_CALLS = frozenset({"now", "utcnow", "today"})


def imported_modules(source: str) -> set[str]:
    """Absolute names of every module a source imports, at any depth of the tree."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative imports are not used in this project"
            assert node.module is not None
            found.add(node.module)
    return found


def clock_calls(source: str) -> set[str]:
    """Calls such as `datetime.now()` that read the clock."""
    return {
        ast.unparse(node.func)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CLOCK_CALLS
    }


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_the_checker_sees_every_form_of_import() -> None:
    source = (
        "import nats.js\n"
        "from asyncio import sleep\n"
        "def f():\n"
        "    import socket\n"
        "    return datetime.now(UTC)\n"
    )
    assert imported_modules(source) == {"nats.js", "asyncio", "socket"}
    assert clock_calls(source) == {"datetime.now"}


def test_the_pure_set_is_what_it_claims() -> None:
    assert {"engine.fold", "engine.decide", "schemas.events", "schemas.kinds"} <= PURE_NAMES
    assert all(path.is_file() for path in PURE_MODULES)


@pytest.mark.parametrize("path", PURE_MODULES, ids=_id)
def test_pure_module_imports_no_io(path: Path) -> None:
    imports = imported_modules(path.read_text())
    bad = sorted(name for name in imports if name.split(".")[0] in FORBIDDEN)
    assert not bad, f"{_id(path)} imports {bad}"


@pytest.mark.parametrize("path", PURE_MODULES, ids=_id)
def test_pure_module_imports_only_pure_project_modules(path: Path) -> None:
    # Importing e.g. engine.jetstream would pull nats in through the back door.
    imports = imported_modules(path.read_text())
    project = {name for name in imports if name.split(".")[0] in {"engine", "schemas", "api"}}
    assert project <= PURE_NAMES, f"{_id(path)} imports {sorted(project - PURE_NAMES)}"


@pytest.mark.parametrize("path", PURE_MODULES, ids=_id)
def test_pure_module_reads_no_clock(path: Path) -> None:
    calls = clock_calls(path.read_text())
    assert not calls, f"{_id(path)} reads the clock: {sorted(calls)}"
