"""Sandbox containers as data: names, the Docker create body, output tails, the orphan rule."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.sandbox import Limits
from executors.sandbox_exec import RUN_AND_CLEAN, RUN_AND_KEEP, CommandRun, command_argv
from executors.sandbox_spec import (
    ACCOUNT,
    HOST,
    INSTANCE,
    MANAGED,
    PID,
    ROLE,
    SESSION,
    STARTED,
    WORKSPACE_MOUNT,
    ContainerSpec,
    OutputTail,
    Owner,
    container_config,
    exec_workdir,
    is_orphan,
    normalize_image,
    pull_progress,
    volume_name,
)

LIMITS = Limits(cpu=1.5, memory_mb=256, pids=128, network="none")
ME = Owner(host="h", pid=10, started="100", instance="me")
names = st.from_regex(r"[a-z0-9][a-z0-9_-]{0,10}", fullmatch=True)


def test_images_compare_with_their_implied_tag() -> None:
    assert normalize_image("busybox") == "busybox:latest"
    assert normalize_image("busybox:1.36") == "busybox:1.36"
    assert normalize_image("localhost:5000/team/app") == "localhost:5000/team/app:latest"
    assert normalize_image("app@sha256:abc") == "app@sha256:abc"


@given(names, names, names, names)
def test_two_accounts_never_share_a_volume(a1: str, w1: str, a2: str, w2: str) -> None:
    if (a1, w1) != (a2, w2):
        assert volume_name(a1, w1) != volume_name(a2, w2)


def test_container_config_is_unprivileged_and_limited() -> None:
    spec = ContainerSpec.of("busybox", LIMITS, volume="chaser.acme.proj")
    config = container_config(spec, {ROLE: "workspace"})
    host = config["HostConfig"]
    assert host["CapDrop"] == ["ALL"]
    assert host["SecurityOpt"] == ["no-new-privileges"]
    assert host["Privileged"] is False and host["Binds"] == []
    assert host["Mounts"] == [
        {"Type": "volume", "Source": "chaser.acme.proj", "Target": WORKSPACE_MOUNT}
    ]
    assert host["Memory"] == host["MemorySwap"] == 256 * 1024 * 1024
    assert host["NanoCpus"] == 1_500_000_000 and host["PidsLimit"] == 128
    assert host["NetworkMode"] == "none" and config["NetworkDisabled"] is True
    assert config["Image"] == "busybox:latest"
    assert config["Labels"] == {MANAGED: "1", ROLE: "workspace"}
    assert config["WorkingDir"] == WORKSPACE_MOUNT
    assert "docker.sock" not in str(config)


def test_ephemeral_container_config_has_no_mount() -> None:
    config = container_config(ContainerSpec.of("busybox", LIMITS), {})
    assert config["HostConfig"]["Mounts"] == [] and config["WorkingDir"] == ""


def test_working_directories() -> None:
    assert exec_workdir(None, workspace=True) == WORKSPACE_MOUNT
    assert exec_workdir("src/app", workspace=True) == "/workspace/src/app"
    assert exec_workdir("../etc", workspace=True) == "/etc"
    assert exec_workdir("/opt", workspace=True) == "/opt"
    assert exec_workdir(None, workspace=False) is None
    assert exec_workdir("tmp", workspace=False) == "/tmp"


def test_command_argv_passes_the_command_as_one_argument() -> None:
    argv = command_argv("echo 'a b' && exit 3", "/workspace", keep_processes=False)
    assert argv == ["/bin/sh", "-c", RUN_AND_CLEAN, "chaser", "echo 'a b' && exit 3", "/workspace"]
    assert command_argv("x", None, keep_processes=True)[2:] == [RUN_AND_KEEP, "chaser", "x", "."]


@given(st.lists(st.binary(max_size=50), max_size=30), st.integers(1, 64))
def test_output_tail_keeps_the_last_bytes_and_counts_all(chunks: list[bytes], limit: int) -> None:
    tail = OutputTail(limit)
    for chunk in chunks:
        tail.add(chunk)
    whole = b"".join(chunks)
    assert tail.total == len(whole)
    assert tail.truncated == (len(whole) > limit)
    assert bytes(tail._buf) == whole[-limit:] if whole else tail._buf == b""


def test_output_tail_drops_a_character_cut_at_the_front() -> None:
    tail = OutputTail(5)
    tail.add("aé€b".encode())  # a, é (2 bytes), € (3 bytes), b: 7 bytes
    assert tail.truncated and tail.text() == "€b"


def test_command_run_keeps_streams_apart() -> None:
    run = CommandRun(4)
    run.add("stdout", b"out")
    run.add("stderr", b"error!")
    assert (run.stdout.text(), run.stderr.text(), run.combined.text()) == ("out", "ror!", "ror!")
    assert run.truncated


def labels(role: str, owner: Owner | None = None, **extra: str) -> dict[str, str]:
    found = {MANAGED: "1", ROLE: role, **extra}
    return {**found, **(owner.labels() if owner else {})}


def test_orphans_are_containers_of_dead_owners_and_ended_sessions() -> None:
    dead = Owner(host="h", pid=11, started="5", instance="dead")
    alive = Owner(host="h", pid=12, started="6", instance="alive")
    remote = Owner(host="other", pid=13, started="7", instance="remote")
    verdicts = {"dead": False, "alive": True, "remote": None}

    def orphan(found: dict[str, str], session_live: bool | None = None) -> bool:
        return is_orphan(
            found,
            me=ME,
            alive=lambda owner: verdicts[owner.instance],
            session_live=lambda account, session: session_live,
        )

    assert orphan(labels("workspace", dead))
    assert orphan(labels("warm", dead))
    assert not orphan(labels("workspace", alive))
    assert not orphan(labels("ephemeral", remote))  # cannot tell: left alone
    assert not orphan(labels("workspace", ME))
    assert not orphan(labels("workspace"))  # no owner labels: not ours to judge
    session = labels("session", dead, **{ACCOUNT: "acme", SESSION: "ses_1"})
    assert orphan(session, session_live=False)
    assert not orphan(session, session_live=True)
    assert not orphan(session, session_live=None)


def test_owner_labels_round_trip() -> None:
    assert Owner.from_labels(ME.labels()) == ME
    assert Owner.from_labels({HOST: "h", PID: "x", INSTANCE: "i", STARTED: ""}) is None


def test_pull_progress_reports_each_change_once() -> None:
    seen: set[tuple[str, str]] = set()
    items = [
        {"status": "Pulling from library/busybox", "id": "latest"},
        {"status": "Downloading", "id": "abc", "progressDetail": {"current": 1}},
        {"status": "Downloading", "id": "abc", "progressDetail": {"current": 2}},
        {"status": "Pull complete", "id": "abc"},
        {"status": "Digest: sha256:1"},
        {"progressDetail": {}},
    ]
    lines = [pull_progress(item, seen) for item in items]
    assert lines == [
        "latest: Pulling from library/busybox",
        "abc: Downloading",
        None,
        "abc: Pull complete",
        "Digest: sha256:1",
        None,
    ]


def test_the_pure_sandbox_modules_do_no_io() -> None:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    forbidden = {"aiodocker", "nats", "asyncio", "os", "socket", "subprocess", "time", "structlog"}
    for module in ("engine/sandbox.py", "executors/sandbox_spec.py"):
        tree = ast.parse((root / module).read_text())
        imported = {
            name.split(".")[0]
            for node in ast.walk(tree)
            for name in (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        }
        assert not imported & forbidden, f"{module} imports {sorted(imported & forbidden)}"
