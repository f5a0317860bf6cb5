"""The `xero-gateway user reset-mfa` command: support resets a user's 2FA (a principal's, or a
member's) once someone has checked the person's identity; who did, and how, is audited."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.accounts.emails import normalise_email
from gateway.clock import system_clock
from gateway.config import Config
from gateway.errors import NotFoundError, UsageError
from gateway.secondfactor.resets import ResetHow, Resets, support_problems
from gateway.sending.drivers import open_drivers
from gateway.store import Store

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def _operator() -> str:
    """Who ran the command, as the operating system names them (for the audit trail)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def add_reset_command(
    user_sub: argparse._SubParsersAction[argparse.ArgumentParser], *, load: Loader, run: StoreRunner
) -> None:
    """Add `user reset-mfa EMAIL --verified-by NAME --reason TEXT`."""

    def reset(args: argparse.Namespace) -> int:
        problems = support_problems(args.verified_by, args.reason)
        if problems:
            raise UsageError("; ".join(problems))
        config = load(args)

        async def action(store: Store) -> int:
            user = await store.users.find_by_email(normalise_email(args.email))
            if user is None:
                raise NotFoundError(f"no user has the email {args.email!r}")
            if user.disabled:
                raise NotFoundError(f"{user.email} is disabled: there is nothing to reset")
            drivers = open_drivers(config)
            try:
                how = ResetHow(
                    via="support-cli",
                    by=f"cli ({_operator()})",
                    actor="cli",
                    reason=args.reason.strip(),
                    verified_by=args.verified_by.strip(),
                )
                done = await Resets(store, system_clock, drivers.email).reset(user, how)
            finally:
                await drivers.close()
            counts = done.counts
            print(
                f"reset 2FA for {user.email}: {counts.factors} factor(s),"
                f" {counts.recovery_codes} recovery code(s), {counts.devices} remembered"
                f" device(s) removed, {counts.sessions} session(s) ended"
                f" (running gateways notice within two seconds);"
                f" {'emailed' if done.emailed else 'NOT emailed (no email set up, or it failed)'}"
            )
            return 0

        return asyncio.run(run(config, action))

    p = user_sub.add_parser(
        "reset-mfa",
        help="reset a user's 2FA after checking their identity (they set it up again)",
    )
    p.add_argument("email")
    p.add_argument(
        "--verified-by",
        required=True,
        metavar="NAME",
        help="who checked the person's identity, and how (kept in the audit trail)",
    )
    p.add_argument("--reason", required=True, metavar="TEXT", help="why (kept in the audit trail)")
    p.set_defaults(func=reset)
