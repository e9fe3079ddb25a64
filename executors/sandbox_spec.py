"""What a sandbox container is, as data: names, labels, the Docker create body, output tails
and the orphan rule. Pure: no I/O, so every rule here has a unit test."""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from engine.sandbox import Limits

WORKSPACE_MOUNT = "/workspace"
# The keeper is a container's main process: it idles, reaps orphaned children, and survives
# `kill -9 -1` (the kernel never delivers that to a namespace's init), which is how a job's
# processes are killed without killing the container.
KEEPER_SCRIPT = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait; done"
KILL_ALL = ["/bin/sh", "-c", "kill -9 -1"]
TIMED_OUT_EXIT = 124

LABEL = "org.chaser."
MANAGED = LABEL + "managed"
ROLE = LABEL + "role"
ACCOUNT = LABEL + "account"
WORKSPACE = LABEL + "workspace"
SESSION = LABEL + "session"
JOB = LABEL + "job"
ATTEMPT = LABEL + "attempt"
HOST = LABEL + "host"
PID = LABEL + "pid"
STARTED = LABEL + "started"
INSTANCE = LABEL + "instance"

# Roles: a workspace's container kept warm by one executor, a live session's container, a
# container taken for one ephemeral job, and a fresh one waiting in the warm pool.
ROLES = ("workspace", "session", "ephemeral", "warm")


def normalize_image(image: str) -> str:
    """An image reference with its implied `:latest`, so equal images compare equal."""
    if "@" in image:
        return image
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else f"{image}:latest"


def volume_name(account: str, workspace: str) -> str:
    """The Docker volume of an account's workspace; `.` never occurs in either name, so two
    accounts' workspaces can never map to one volume."""
    return f"chaser.{account}.{workspace}"


class ContainerSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Everything fixed when a container is created; jobs with an equal spec may share one."""

    image: str
    cpu: float
    memory_mb: int
    pids: int
    network: str
    volume: str | None = None

    @classmethod
    def of(cls, image: str, limits: Limits, volume: str | None = None) -> ContainerSpec:
        """A spec from an image, resolved limits and an optional workspace volume."""
        return cls(
            image=normalize_image(image),
            cpu=limits.cpu,
            memory_mb=limits.memory_mb,
            pids=limits.pids,
            network=limits.network,
            volume=volume,
        )


class Owner(msgspec.Struct, frozen=True, kw_only=True):
    """The executor process that created a container: host, pid, the pid's start time (so a
    reused pid is not mistaken for it) and a random instance id."""

    host: str
    pid: int
    started: str
    instance: str

    def labels(self) -> dict[str, str]:
        """The owner as container labels."""
        return {HOST: self.host, PID: str(self.pid), STARTED: self.started, INSTANCE: self.instance}

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> Owner | None:
        """The owner a container's labels name, or None when they name none."""
        try:
            return cls(
                host=labels[HOST],
                pid=int(labels[PID]),
                started=labels.get(STARTED, ""),
                instance=labels[INSTANCE],
            )
        except (KeyError, ValueError):
            return None


def container_config(spec: ContainerSpec, labels: Mapping[str, str]) -> dict[str, Any]:
    """The Docker create body: the keeper as main process, the limits, nothing privileged, no
    mount but the workspace volume."""
    host: dict[str, Any] = {
        "NetworkMode": spec.network,
        "CapDrop": ["ALL"],
        "SecurityOpt": ["no-new-privileges"],
        "Privileged": False,
        "Memory": spec.memory_mb * 1024 * 1024,
        "MemorySwap": spec.memory_mb * 1024 * 1024,
        "NanoCpus": int(spec.cpu * 1_000_000_000),
        "PidsLimit": spec.pids,
        "IpcMode": "private",
        "Init": False,
        "AutoRemove": False,
        "RestartPolicy": {"Name": "no"},
        "Binds": [],
        "Mounts": [],
    }
    if spec.volume is not None:
        host["Mounts"] = [{"Type": "volume", "Source": spec.volume, "Target": WORKSPACE_MOUNT}]
    return {
        "Image": spec.image,
        "Entrypoint": ["/bin/sh", "-c"],
        "Cmd": [KEEPER_SCRIPT],
        "WorkingDir": WORKSPACE_MOUNT if spec.volume is not None else "",
        "Labels": {MANAGED: "1", **labels},
        "NetworkDisabled": spec.network == "none",
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "Tty": False,
        "HostConfig": host,
    }


def exec_workdir(workdir: str | None, *, workspace: bool) -> str | None:
    """Where a command starts: the workspace mount by default; relative paths are relative
    to it (to `/` in an ephemeral sandbox)."""
    base = WORKSPACE_MOUNT if workspace else "/"
    if workdir is None or workdir == "":
        return WORKSPACE_MOUNT if workspace else None
    return posixpath.normpath(posixpath.join(base, workdir))


def shell_argv(command: str) -> list[str]:
    """A command as a shell runs it."""
    return ["/bin/sh", "-c", command]


class OutputTail:
    """The last `limit` bytes of a stream, and how many bytes it had in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def add(self, data: bytes) -> None:
        """Append output, keeping only the tail."""
        self.total += len(data)
        self._buf += data
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    @property
    def truncated(self) -> bool:
        """Whether bytes were dropped from the front."""
        return self.total > self.limit

    def text(self) -> str:
        """The tail as text; a character cut in half at the front is dropped."""
        data = bytes(self._buf)
        if self.truncated:
            cut = 0
            while cut < min(3, len(data)) and data[cut] & 0xC0 == 0x80:
                cut += 1
            data = data[cut:]
        return data.decode("utf-8", errors="replace")


def is_orphan(
    labels: Mapping[str, str],
    *,
    me: Owner,
    alive: Callable[[Owner], bool | None],
    session_live: Callable[[str, str], bool | None],
) -> bool:
    """Whether a managed container serves nothing any more and should be removed.

    A session's container lives as long as its session, whoever started it. Any other
    container belongs to the executor process that created it: it is an orphan once that
    process is known dead (`alive` answers None when it cannot tell, e.g. another host).
    """
    if labels.get(ROLE) == "session":
        live = session_live(labels.get(ACCOUNT, ""), labels.get(SESSION, ""))
        return live is False
    owner = Owner.from_labels(labels)
    if owner is None:
        return False
    if owner.instance == me.instance:
        return False
    return alive(owner) is False


def pull_progress(item: Mapping[str, Any], seen: set[tuple[str, str]]) -> str | None:
    """One line of a `docker pull` progress stream worth logging (each layer's status
    changes once; byte counters are not repeated)."""
    status = str(item.get("status") or "")
    if not status:
        return None
    ident = str(item.get("id") or "")
    if (ident, status) in seen:
        return None
    seen.add((ident, status))
    return f"{ident}: {status}" if ident else status
