"""Actions a deployment provides offline in CHASER_ACTIONS_DIR, laid out as
`<dir>/<owner>/<repo>/<ref>/...` or `<dir>/<owner>/<repo>/...` (any ref)."""

from __future__ import annotations

import os
from pathlib import Path

from executors.github.actions import ActionRef

MAX_ACTION_BYTES = 64 * 1024 * 1024


def action_root(actions_dir: str | None, ref: ActionRef) -> Path | None:
    """The directory holding an action's repository, or None."""
    if not actions_dir:
        return None
    base = Path(actions_dir) / ref.owner / ref.repo
    for candidate in (base / ref.ref, base):
        target = candidate / ref.path if ref.path else candidate
        if any((target / name).is_file() for name in ("action.yml", "action.yaml")):
            resolved = candidate.resolve()
            if resolved.is_relative_to(Path(actions_dir).resolve()):
                return resolved
    return None


def provided_action(actions_dir: str | None, ref: ActionRef) -> dict[str, bytes] | None:
    """Every file of the action's repository directory, by relative path (None when the
    deployment does not provide it)."""
    root = action_root(actions_dir, ref)
    if root is None:
        return None
    files: dict[str, bytes] = {}
    total = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_file():
                continue
            data = path.read_bytes()
            total += len(data)
            if total > MAX_ACTION_BYTES:
                return None
            files[str(path.relative_to(root))] = data
    return files
