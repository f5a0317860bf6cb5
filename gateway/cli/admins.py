"""The `xero-gateway admin …` commands: add, list and disable the gateway's admins (people)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.accounts.emails import email_problem, normalise_email
from gateway.accounts.passwords import Passwords, password_problem
from gateway.audit import AdminAdded, AdminDisabled
from gateway.cli.terminal import table, when
from gateway.clock import system_clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.errors import UsageError
from gateway.signin.admins import add_admin, disable_admin
from gateway.store import Store

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def _read_password(args: argparse.Namespace) -> str:
    """From --password-file (its first line), a line on stdin when it is not a terminal, or
    typed twice at a prompt."""
    if args.password_file:
        try:
            with open(args.password_file, encoding="utf-8") as handle:
                return handle.readline().rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file: cannot read it: {exc}") from None
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ")
    return first


def build_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    load: Loader,
    load_with_secret: Loader,
    run: StoreRunner,
) -> None:
    """Add `admin add|list|disable` to the main parser."""

    def add(args: argparse.Namespace) -> int:
        config = load_with_secret(args)  # the seed is sealed with the secret key
        keys = Keys.derive(config.security.secret_key, config.security.previous_secret_keys)
        email = normalise_email(args.email)
        problem = email_problem(email)
        if problem:
            raise UsageError(f"EMAIL: {problem}")
        name = args.name.strip()
        if not name or not name.isprintable() or len(name) > 200:
            raise UsageError("--name: give the admin's name (printable, at most 200 characters)")
        password = _read_password(args)
        problem = password_problem(password)
        if problem:
            raise UsageError(f"password {problem}")

        async def action(store: Store) -> int:
            now = system_clock()
            added = await add_admin(
                store,
                keys.at_rest,
                email=email,
                name=name,
                password_hash=Passwords().hash(password),
                issuer=config.security.totp_issuer,
                now=now,
            )
            admin = added.admin
            event = AdminAdded(admin_id=admin.id, email=admin.email, name=admin.name)
            await store.audit.record(event, at=now, actor="cli")
            print(f"added admin {admin.email} ({admin.id})", file=sys.stderr)
            print("Add this to the admin's authenticator app now; it is not shown again.")
            print(f"otpauth URI: {added.uri}")
            print(f"key: {added.key}")
            return 0

        return asyncio.run(run(config, action))

    def listing(args: argparse.Namespace) -> int:
        config = load(args)

        async def action(store: Store) -> int:
            rows = [
                (
                    a.id,
                    a.email,
                    a.name,
                    when(a.created_at),
                    f"disabled {when(a.disabled_at)}" if a.disabled_at is not None else "active",
                )
                for a in await store.admins.list()
            ]
            table(sys.stdout, ("id", "email", "name", "created", "status"), rows)
            return 0

        return asyncio.run(run(config, action))

    def disable(args: argparse.Namespace) -> int:
        config = load(args)

        async def action(store: Store) -> int:
            now = system_clock()
            # Their sessions end with it: every gateway reads admin sessions from the store.
            admin = await disable_admin(store, normalise_email(args.email), now)
            await store.audit.record(AdminDisabled(admin_id=admin.id), at=now, actor="cli")
            print(f"disabled admin {admin.email}")
            return 0

        return asyncio.run(run(config, action))

    admins = sub.add_parser(
        "admin", help="the gateway's admins (people, with password and TOTP; not admin tokens)"
    )
    admins_sub = admins.add_subparsers(dest="admin_command", required=True, metavar="ACTION")
    p = admins_sub.add_parser(
        "add", help="add an admin; prints their authenticator app's otpauth URI and key once"
    )
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--name", required=True, help="the admin's name, as shown in the console")
    p.add_argument(
        "--password-file",
        help="read the password from this file's first line (else stdin, or a prompt)",
    )
    p.set_defaults(func=add)
    p = admins_sub.add_parser("list", help="list admins (never their secrets)")
    p.set_defaults(func=listing)
    p = admins_sub.add_parser("disable", help="disable an admin and end their sessions")
    p.add_argument("email", metavar="EMAIL")
    p.set_defaults(func=disable)
