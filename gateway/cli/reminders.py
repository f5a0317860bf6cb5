"""The `xero-gateway reminders run` command: a reminder round now, or what one would send."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.cli.terminal import parse_instant
from gateway.clock import ManualClock, system_clock
from gateway.config import Config
from gateway.errors import UsageError
from gateway.reminders.service import Reminders, describe
from gateway.sending.drivers import open_drivers
from gateway.store import Store

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def build_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], *, load: Loader, run: StoreRunner
) -> None:
    """Add the `reminders` command group."""

    def run_round(args: argparse.Namespace) -> int:
        if args.at and not args.dry_run:
            raise UsageError("--at needs --dry-run: a real round sends at the present time")
        config = load(args)
        clock = ManualClock(parse_instant(args.at).timestamp()) if args.at else system_clock

        async def action(store: Store) -> int:
            drivers = open_drivers(config)
            try:
                if drivers.email is None and not args.dry_run:
                    raise UsageError("no email delivery is set up ([email] host or driver)")
                rounds = Reminders(
                    store=store,
                    email=drivers.email,
                    clock=clock,
                    base_url=config.server.public_url.rstrip("/"),
                )
                report = await rounds.run(dry_run=args.dry_run)
            finally:
                await drivers.close()
            for line in describe(report):
                print(line)
            if args.dry_run:
                print(f"{report.count('due')} due (dry run: nothing sent, nothing claimed)")
            else:
                print(
                    f"{report.count('sent')} sent, {report.count('failed')} failed (retried"
                    f" later), {report.count('taken')} taken by another gateway process"
                )
            return 0

        return asyncio.run(run(config, action))

    group = sub.add_parser("reminders", help="reminder emails before 2FA deadlines")
    actions = group.add_subparsers(dest="reminders_command", required=True, metavar="ACTION")
    p = actions.add_parser(
        "run", help="send the reminders and weekly summaries due now (each once, ever)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list what would be sent; send and claim nothing"
    )
    p.add_argument(
        "--at", help="with --dry-run: judge at this ISO date or date-time (UTC unless a zone)"
    )
    p.set_defaults(func=run_round)
