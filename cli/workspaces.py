"""`chaser workspaces upload W DIR`: copy a local folder into a workspace (how a user brings
a repository in), through `PUT /v1/workspaces/{w}/archive`."""

from __future__ import annotations

import argparse
import io
import os
import tarfile
from typing import TypeAlias

import msgspec

from cli.client import ApiClient, UsageError
from cli.jobs import emit_json, run

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
UPLOAD_TIMEOUT = 600.0


def tar_directory(root: str) -> bytes:
    """A tar of a local directory's contents, owned by root and writable by its owner (the
    sandboxes run as root without capabilities: files must be root's to be changed)."""
    buffer = io.BytesIO()

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mode |= 0o200
        return info

    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name in sorted(os.listdir(root)):
            archive.add(os.path.join(root, name), arcname=name, filter=owned)
    return buffer.getvalue()


def cmd_upload(client: ApiClient, args: argparse.Namespace) -> int:
    """`workspaces upload W DIR`."""
    if not os.path.isdir(args.directory):
        raise UsageError(f"workspaces upload: {args.directory} is not a directory")
    data = tar_directory(args.directory)
    answer = client.request_bytes(
        "PUT", f"/v1/workspaces/{args.workspace}/archive", content=data, timeout=UPLOAD_TIMEOUT
    )
    if args.json:
        emit_json(msgspec.json.decode(answer))
    else:
        print(f"uploaded {args.directory} into workspace {args.workspace} ({len(data)} bytes)")
    return 0


def register_workspaces(sub: SubParsers) -> None:
    """Add the `workspaces` command tree."""
    workspaces = sub.add_parser("workspaces", help="workspaces").add_subparsers(
        dest="workspaces_command", required=True
    )
    upload = workspaces.add_parser("upload", help="copy a local folder into a workspace")
    upload.add_argument("workspace")
    upload.add_argument("directory")
    upload.add_argument("--json", action="store_true")
    upload.add_argument("--account", help="account to act for (default: $CHASER_ACCOUNT)")
    upload.set_defaults(func=run(cmd_upload))
