"""`chaser`: entry point and argument parsing."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import msgspec

from cli.audit import register_audit
from cli.events import register_events
from cli.jobs import register_jobs
from cli.logs import configure_logging
from cli.natsctx import deployment
from cli.runner import register_runner
from cli.workspaces import register_workspaces
from engine.accounts import KeyRing, set_account_limit
from engine.errors import DomainError
from engine.settings import ROLES, Settings, settings_from_env


def _settings(args: argparse.Namespace) -> Settings:
    return settings_from_env(
        os.environ,
        roles=frozenset(args.roles.split(",")) if getattr(args, "roles", None) else None,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the engine."""
    from cli.server import serve

    settings = _settings(args)
    unknown = settings.roles - ROLES
    if unknown:
        print(f"chaser serve: unknown role(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_json)
    run_loop(serve(settings))
    return 0


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop where it is installed (it halves the cost of socket I/O), else asyncio."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
    else:
        uvloop.run(main)


def _print(value: object, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    else:
        print(text)


def cmd_keys(args: argparse.Namespace) -> int:
    """API-key administration, directly on the deployment's NATS."""
    settings = _settings(args)

    async def run() -> int:
        async with deployment(settings) as js:
            ring = KeyRing(js)
            if args.keys_command == "create":
                issued = await ring.create(args.account, name=args.name)
                _print(
                    {"key": issued.key, "id": issued.id, "accounts": issued.accounts},
                    args.json,
                    f"{issued.key}\n(key id {issued.id}, accounts: {', '.join(issued.accounts)};"
                    " the key is shown only once)",
                )
            elif args.keys_command == "list":
                keys = await ring.list()
                rows = [
                    {
                        "id": k.id,
                        "accounts": k.accounts,
                        "created_at": k.created_at,
                        "revoked_at": k.revoked_at,
                        "name": k.name,
                    }
                    for k in keys
                ]
                lines = [
                    f"{k.id}  {','.join(k.accounts):30}  {'revoked' if k.revoked_at else 'active'}"
                    for k in keys
                ]
                _print(rows, args.json, "\n".join(lines) or "no keys")
            else:
                revoked = await ring.revoke(args.key_id)
                _print(
                    {"id": revoked.id, "revoked_at": revoked.revoked_at},
                    args.json,
                    f"revoked {revoked.id}",
                )
        return 0

    return _run_admin(run)


def cmd_accounts(args: argparse.Namespace) -> int:
    """Per-account settings."""
    settings = _settings(args)

    async def run() -> int:
        async with deployment(settings) as js:
            limit = None if args.limit == "default" else int(args.limit)
            await set_account_limit(js, args.account, limit)
            _print(
                {"account": args.account, "limit": limit},
                args.json,
                f"{args.account}: concurrency limit {limit or 'default'}",
            )
        return 0

    return _run_admin(run)


def _run_admin(run: Callable[[], Coroutine[Any, Any, int]]) -> int:
    try:
        return asyncio.run(run())
    except DomainError as exc:
        print(f"chaser: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree."""
    parser = argparse.ArgumentParser(prog="chaser", description="Chaser Jobs")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run API, dispatcher, projections and executors")
    serve.add_argument("--roles", help=f"comma-separated subset of {','.join(sorted(ROLES))}")
    serve.set_defaults(func=cmd_serve)

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--account", action="append", required=True, help="repeatable")
    create.add_argument("--name")
    create.add_argument("--json", action="store_true")
    listing = keys_sub.add_parser("list", help="list keys")
    listing.add_argument("--json", action="store_true")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    revoke.add_argument("--json", action="store_true")
    keys.set_defaults(func=cmd_keys)

    accounts = sub.add_parser("accounts", help="per-account settings")
    acc_sub = accounts.add_subparsers(dest="accounts_command", required=True)
    set_limit = acc_sub.add_parser("set-limit", help="concurrency limit of an account")
    set_limit.add_argument("account")
    set_limit.add_argument("limit", help="a number, or 'default'")
    set_limit.add_argument("--json", action="store_true")
    accounts.set_defaults(func=cmd_accounts)

    register_jobs(sub)
    register_runner(sub)
    register_workspaces(sub)
    register_events(sub)
    register_audit(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse and run."""
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
