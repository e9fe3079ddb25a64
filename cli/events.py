"""`chaser events tail`: follow the account's events (or one job's) from the terminal."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, TypeAlias

import msgspec

from cli.client import ApiClient, ConnectionFailed, _segment, is_terminal
from cli.jobs import run
from cli.sse import SseMessage, parse_sse

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
RECONNECT_SECONDS = 1.0


def describe(event: dict[str, Any]) -> str:
    """One line for a human: sequence, time, type, the aggregate, and what happened."""
    what = event.get("job_id") or event.get("session_id") or event.get("workspace") or "-"
    parts = [str(event.get("seq", "")).rjust(6), str(event.get("at", "")), event["type"], what]
    error = event.get("error")
    if isinstance(error, dict):
        parts.append(f"{error.get('code')}: {error.get('message')}")
    elif event["type"] == "StepFinished":
        parts.append(f"step {event.get('index')} {event.get('name')}: {event.get('status')}")
    elif event["type"] == "JobCreated":
        parts.append(str(event.get("kind")))
    return "  ".join(parts)


def _show(message: SseMessage, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(message.data + "\n")
    else:
        sys.stdout.write(describe(msgspec.json.decode(message.data)) + "\n")
    sys.stdout.flush()


def cmd_tail(client: ApiClient, args: argparse.Namespace) -> int:
    """Print events as they are appended, reconnecting (without a gap) when the stream drops.
    With `--job` it ends, exit 0, once the job is terminal."""
    path = f"/v1/jobs/{_segment(args.job)}/events" if args.job else "/v1/events"
    last: str | None = args.after
    while True:
        params: dict[str, str | list[str]] = {}
        if args.type:
            params["type"] = args.type
        if last is not None:
            params["after"] = last
        try:
            lines = client.stream_lines(path, params=params)
            for message in parse_sse(line.decode() for line in lines):
                last = message.id or last
                _show(message, args.json)
        except ConnectionFailed as exc:
            print(f"chaser: {exc}; reconnecting", file=sys.stderr)
        if args.job and is_terminal(client.get_job(args.job)):
            return 0  # the job stream ends when the job is terminal
        time.sleep(RECONNECT_SECONDS)


def register_events(sub: SubParsers) -> None:
    """Add the `events` command tree."""
    events = sub.add_parser("events", help="follow the event stream").add_subparsers(
        dest="events_command", required=True
    )
    tail = events.add_parser("tail", help="print events as they are appended (SSE)")
    tail.add_argument("--job", metavar="ID", help="one job's events; ends when it is terminal")
    tail.add_argument("--type", action="append", metavar="T", help="event type (repeatable)")
    tail.add_argument("--after", metavar="SEQ", help="replay from the log after this sequence")
    tail.add_argument("--json", action="store_true", help="one event JSON per line")
    tail.add_argument("--account", help="account to act for (default: $CHASER_ACCOUNT)")
    tail.set_defaults(func=run(cmd_tail))
