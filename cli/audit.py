"""Auditors' commands, straight on the log: `chaser replay`, `chaser audit verify|export`,
`chaser projections rebuild`. They read NATS like `chaser keys` does (CHASER_NATS_URL, or the
embedded server of CHASER_DATA_DIR); `--from-file` works on an export without NATS."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import msgspec

from cli.client import ApiClient, CliError
from cli.logs import configure_logging
from cli.natsctx import deployment
from engine import audit as checks
from engine.auditlog import account_log, partitions_of, rebuild, stream_facts
from engine.errors import EngineError
from engine.jetstream import JetStreamEventStore
from engine.logread import LogReader
from engine.memory import MemoryEventStore
from engine.projection import ReadModel
from engine.settings import settings_from_env
from engine.store import recorded_from
from engine.subjects import partition_of
from schemas.api import JobResource
from schemas.audit import AuditSummary, Finding, StoredMessage, TimelineEntry
from schemas.common import account_problem

SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


class Log(msgspec.Struct, frozen=True, kw_only=True):
    """An account's stored messages and what the stream says about its retained range."""

    account: str
    messages: list[StoredMessage]
    first_seq: int
    deleted: list[int] = []
    partition: int | None = None
    partitions: int = 1
    from_file: bool = False


def _emit(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _run(main: Callable[[], Coroutine[Any, Any, int]]) -> int:
    configure_logging("warning")  # on stderr: stdout is the report (or the export)
    try:
        return asyncio.run(main())
    except (EngineError, CliError, ValueError, OSError) as exc:
        print(f"chaser: {exc}", file=sys.stderr)
        return 2


def _rfc3339(text: str) -> datetime:
    try:
        return msgspec.convert(text, datetime)
    except msgspec.ValidationError as exc:
        raise argparse.ArgumentTypeError(f"not an RFC 3339 time: {text!r}") from exc


def _account(text: str) -> str:
    problem = account_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


async def nats_log(account: str, *, until_seq: int | None = None) -> Log:
    """The account's messages from the deployment's NATS, with its partition's facts."""
    async with deployment(settings_from_env(os.environ)) as js:
        partitions = await partitions_of(js)
        p = partition_of(account, partitions)
        facts = await stream_facts(js, p)
        last = facts.last_seq if until_seq is None else min(until_seq, facts.last_seq)
        messages: list[StoredMessage] = []
        async for batch in account_log(LogReader(js), account, partitions, until_seq=last):
            messages.extend(batch)
    return Log(
        account=account,
        messages=messages,
        first_seq=facts.first_seq,
        deleted=[s for s in facts.deleted if facts.first_seq < s < facts.last_seq],
        partition=p,
        partitions=partitions,
    )


def file_log(path: Path, account: str | None) -> Log:
    """An export file's messages (of `account`, or of the account its first line names)."""
    with path.open("rb") as lines:
        messages = list(checks.read_export(lines))
    if account is None:
        parsed = checks.parse_subject(messages[0].subject) if messages else None
        account = parsed[1] if parsed else "unknown"
    mine = [m for m in messages if f".{account}." in m.subject]
    first = min((m.seq for m in mine), default=1)
    return Log(account=account, messages=mine, first_seq=first, from_file=True)


# --- replay ----------------------------------------------------------------------------------


def cmd_replay(args: argparse.Namespace) -> int:
    """Fold the log (or an export) as of a time or sequence; print timelines or states."""
    if args.from_file is None and args.account is None:
        print("chaser replay: --account is required (or --from-file)", file=sys.stderr)
        return 2

    async def main() -> int:
        if args.from_file is not None:
            log = file_log(args.from_file, args.account)
        else:
            log = await nats_log(args.account, until_seq=args.seq)
        chosen = checks.as_of(log.messages, until_seq=args.seq, until=args.until, job_id=args.job)
        result = checks.audit(log.account, chosen, first_seq=log.first_seq, timelines=True)
        _print_replay(log.account, result, args)
        return 0

    return _run(main)


def _print_replay(account: str, result: checks.AuditResult, args: argparse.Namespace) -> None:
    jobs = sorted(result.jobs.values(), key=lambda j: (j.created_at, j.id))
    if args.json:
        _emit(
            {
                "account": account,
                "as_of": {"seq": args.seq, "until": args.until},
                "jobs": [
                    {"state": JobResource.of(job), "timeline": _timeline(result, job.id, args)}
                    for job in jobs
                ],
                "sessions": list(result.sessions.values()) if args.job is None else [],
                "workspaces": list(result.workspaces.values()) if args.job is None else [],
                "findings": result.findings,
            }
        )
        return
    for job in jobs:
        attempt = f"attempt {job.attempt}/{job.max_attempts}"
        print(f"job {job.id}  {job.kind}  {job.status}  {attempt}  seq {job.seq}")
        for entry in _timeline(result, job.id, args) or []:
            print("  " + _line(entry))
    if not jobs:
        print("no jobs")
    for finding in result.findings:
        print(f"warning: {describe(finding)}", file=sys.stderr)


def _timeline(
    result: checks.AuditResult, job_id: str, args: argparse.Namespace
) -> list[TimelineEntry] | None:
    return None if args.state else result.timelines[("job", job_id)]


def _line(entry: TimelineEntry) -> str:
    detail = " ".join(f"{k}={_short(v)}" for k, v in entry.detail.items() if v not in (None, {}))
    when = entry.at.isoformat()
    return f"{entry.seq:>7}  {when}  {entry.type:<13} {entry.actor:<24} {entry.attempt}  {detail}"


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def describe(finding: Finding) -> str:
    """A finding on one line: check, aggregate and id, sequence, event, why."""
    where = f"{finding.aggregate} {finding.id}" if finding.id else f"partition {finding.partition}"
    event = f" {finding.event_type} {finding.event_id}" if finding.event_id else ""
    return f"{finding.check}: {where} seq {finding.seq or '-'}{event}: {finding.detail}"


# --- audit verify / export -------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace) -> int:
    """Every check of `engine.audit`, plus the live read model against the fold."""

    async def main() -> int:
        if args.from_file:
            log = file_log(args.from_file, args.account)
        else:
            log = await nats_log(args.account)
        auditor = checks.Auditor(log.account, first_seq=log.first_seq)
        auditor.feed(log.messages)
        if log.partition is not None:
            auditor.gaps(log.partition, log.deleted)
        result = auditor.result()
        compared, extra = await _read_model_findings(log, result)
        summary = AuditSummary(
            account=log.account,
            events=result.events,
            jobs=len(result.jobs),
            sessions=len(result.sessions),
            workspaces=len(result.workspaces),
            first_seq=result.first_seq,
            last_seq=result.last_seq,
            truncated=result.truncated,
            read_model=compared,
            findings=[*result.findings, *extra],
        )
        _print_summary(summary, args.json)
        return 1 if summary.findings else 0

    return _run(main)


async def _read_model_findings(
    log: Log, result: checks.AuditResult
) -> tuple[ReadModelSource, list[Finding]]:
    """Compare the live read model (through the API when a key is configured) with the fold;
    without one, a read model rebuilt here by the serving code stands in for it."""
    if log.from_file:
        return "skipped", []
    upto = result.last_seq or 0
    if os.environ.get("CHASER_API_KEY"):
        with ApiClient.from_env(os.environ, account=log.account) as client:
            live = [job for page in client.iter_pages({"limit": "500"}) for job in page["items"]]
        return "live", checks.compare_read_model(result.jobs, live, upto=upto)
    # No key for the account: the serving code's fold, run here, stands in for the live one
    # (the store is only asked its partition count; events are applied directly).
    read_model = ReadModel(MemoryEventStore(log.partitions))
    for msg in log.messages:
        try:
            read_model.apply(recorded_from(msg.partition, msg.seq, msg.data))
        except msgspec.DecodeError:
            continue
    rebuilt = [
        msgspec.json.decode(msgspec.json.encode(JobResource.of(j)))
        for j in read_model.jobs()
        if j.account == log.account
    ]
    return "rebuilt", checks.compare_read_model(result.jobs, rebuilt, upto=upto)


ReadModelSource = Literal["live", "rebuilt", "skipped"]
_SOURCES: dict[str, str] = {
    "live": "the live read model (through the API) equals the fold",
    "rebuilt": "a rebuild by the serving code compared (set CHASER_API_KEY for the live one)",
    "skipped": "not compared (an export, offline)",
}


def _print_summary(summary: AuditSummary, as_json: bool) -> None:
    if as_json:
        _emit(summary)
        return
    span = f"seq {summary.first_seq}..{summary.last_seq}" if summary.events else "no events"
    print(
        f"account {summary.account}: {summary.events} events ({span}), {summary.jobs} jobs, "
        f"{summary.sessions} sessions, {summary.workspaces} workspaces"
    )
    if summary.truncated:
        print(f"histories begun before the retained log (not checked): {len(summary.truncated)}")
    print(f"read model: {_SOURCES[summary.read_model]}")
    for finding in summary.findings:
        print(f"FINDING {describe(finding)}")
    print(f"{len(summary.findings)} finding(s)" if summary.findings else "OK: the log verifies")


def cmd_export(args: argparse.Namespace) -> int:
    """The account's stored events as JSON Lines, in stream order, on stdout."""

    async def main() -> int:
        out = sys.stdout.buffer
        async with deployment(settings_from_env(os.environ)) as js:
            partitions = await partitions_of(js)
            reader = LogReader(js)
            last = await reader.last_seq(partition_of(args.account, partitions))
            batches = account_log(
                reader, args.account, partitions, since=args.since, until_seq=last
            )
            async for batch in batches:
                out.write(b"".join(checks.export_line(msg) for msg in batch))
        out.flush()
        return 0

    return _run(main)


# --- projections rebuild ---------------------------------------------------------------------


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Rebuild a read model from the whole log with the serving code; report its speed."""

    async def main() -> int:
        async with deployment(settings_from_env(os.environ)) as js:
            partitions = await partitions_of(js)
            read_model = ReadModel(JetStreamEventStore(js, partitions))
            bar = _Bar() if sys.stderr.isatty() or args.progress else None
            report = await rebuild(LogReader(js), read_model, partitions, bar)
        if bar is not None:
            sys.stderr.write("\n")
        if args.json:
            _emit(report)
        else:
            print(
                f"rebuilt {report.jobs} jobs, {report.sessions} sessions, {report.workspaces} "
                f"workspaces from {report.events} events in {report.seconds:.2f}s "
                f"({report.events_per_second:,} events/s); rejected by the state machine: "
                f"{report.rejected}, undecodable: {report.undecodable}"
            )
        return 1 if report.rejected or report.undecodable else 0

    return _run(main)


class _Bar:
    """A progress bar on stderr: done/total events and the rate so far."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def __call__(self, done: int, total: int) -> None:
        rate = done / max(time.perf_counter() - self.started, 1e-6)
        filled = int(30 * done / total) if total else 30
        bar = "#" * filled + "." * (30 - filled)
        sys.stderr.write(f"\r[{bar}] {done:,}/{total:,} events  {rate:,.0f} events/s")
        sys.stderr.flush()


# --- wiring ----------------------------------------------------------------------------------


def register_audit(sub: SubParsers) -> None:
    """Add `replay`, `audit` and `projections`."""
    replay = sub.add_parser("replay", help="job state and timelines from the log alone")
    replay.add_argument("--account", type=_account)
    replay.add_argument("--job", metavar="ID")
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--until", type=_rfc3339, metavar="RFC3339", help="as of this time")
    when.add_argument("--seq", type=int, metavar="N", help="as of this stream sequence")
    replay.add_argument("--state", action="store_true", help="folded states only, no timelines")
    replay.add_argument("--from-file", type=Path, metavar="FILE", help="an audit export, offline")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=cmd_replay)

    audit = sub.add_parser("audit", help="verify and export the log").add_subparsers(
        dest="audit_command", required=True
    )
    verify = audit.add_parser("verify", help="hash chains, gaps, decoding, transitions, read model")
    verify.add_argument("--account", type=_account, required=True)
    verify.add_argument("--from-file", type=Path, metavar="FILE", help="verify an export offline")
    verify.add_argument("--json", action="store_true")
    verify.set_defaults(func=cmd_verify)
    export = audit.add_parser("export", help="the account's events as JSON Lines, stream order")
    export.add_argument("--account", type=_account, required=True)
    export.add_argument("--since", type=_rfc3339, metavar="RFC3339")
    export.set_defaults(func=cmd_export)

    projections = sub.add_parser("projections", help="read models").add_subparsers(
        dest="projections_command", required=True
    )
    rebuild_cmd = projections.add_parser("rebuild", help="rebuild a read model from the log")
    rebuild_cmd.add_argument("--json", action="store_true")
    rebuild_cmd.add_argument(
        "--progress", action="store_true", help="a progress bar even when not a terminal"
    )
    rebuild_cmd.set_defaults(func=cmd_rebuild)
