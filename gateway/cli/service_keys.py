"""The `xero-gateway service-key …` commands: make, list and revoke an organisation's keys."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from gateway.accounts.tenancy import find_org
from gateway.cli.terminal import table, when
from gateway.clock import system_clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.store import Store
from gateway.xero.service_keys import create_service_key, revoke_service_key

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def build_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    load: Loader,
    load_with_secret: Loader,
    run: StoreRunner,
) -> None:
    """Add `service-key create|list|revoke` to the main parser."""

    def create(args: argparse.Namespace) -> int:
        config = load_with_secret(args)  # the key's hash is keyed with the secret key
        keys = Keys.derive(config.security.secret_key, config.security.previous_secret_keys)

        async def action(store: Store) -> int:
            org = await find_org(store, args.org)
            raw, key = await create_service_key(
                store,
                keys.service_keys,
                org_id=org.id,
                name=args.name,
                now=system_clock(),
                by="cli",
            )
            print(f"{key.id} for {org.name} ({org.id})", file=sys.stderr)
            print(raw)  # shown this once: only its keyed hash is stored
            return 0

        return asyncio.run(run(config, action))

    def listing(args: argparse.Namespace) -> int:
        config = load(args)

        async def action(store: Store) -> int:
            org = await find_org(store, args.org)
            rows = [
                (
                    k.id,
                    k.name,
                    when(k.created_at),
                    k.created_by,
                    "revoked" if k.revoked_at is not None else "active",
                    when(k.last_used_at) if k.last_used_at is not None else "never",
                )
                for k in await store.service_keys.for_org(org.id)
            ]
            headers = ("id", "name", "created", "by", "status", "last used")
            table(sys.stdout, headers, rows)
            return 0

        return asyncio.run(run(config, action))

    def revoke(args: argparse.Namespace) -> int:
        config = load(args)

        async def action(store: Store) -> int:
            org = await find_org(store, args.org)
            now = system_clock()
            if await revoke_service_key(store, args.key_id, org_id=org.id, now=now, by="cli"):
                print(f"revoked {args.key_id}")
            else:
                print(f"{args.key_id} was revoked already")
            return 0

        return asyncio.run(run(config, action))

    keys = sub.add_parser("service-key", help="keys for an organisation's background jobs (Xero)")
    keys_sub = keys.add_subparsers(dest="service_key_command", required=True, metavar="ACTION")
    p = keys_sub.add_parser("create", help="make a key; prints it once")
    p.add_argument("--org", required=True, help="organisation name or id")
    p.add_argument("--name", required=True, help="what uses it, e.g. 'nightly sync'")
    p.set_defaults(func=create)
    p = keys_sub.add_parser("list", help="list an organisation's keys (never the secrets)")
    p.add_argument("--org", required=True, help="organisation name or id")
    p.set_defaults(func=listing)
    p = keys_sub.add_parser("revoke", help="revoke a key for good")
    p.add_argument("--org", required=True, help="organisation name or id")
    p.add_argument("key_id", metavar="ID")
    p.set_defaults(func=revoke)
