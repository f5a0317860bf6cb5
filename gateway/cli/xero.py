"""The `xero-gateway xero status|disconnect` commands: an organisation's Xero connections."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import aiohttp

from gateway.accounts.tenancy import find_org
from gateway.cli.terminal import table, when
from gateway.clock import system_clock
from gateway.config import Config
from gateway.crypto.keys import Keys
from gateway.errors import NotFoundError
from gateway.store import Store
from gateway.store.records import AuditEntry
from gateway.xero.connect import Connector
from gateway.xero.identity import IdentityClient
from gateway.xero.overview import ConnectionRow, load_rows
from gateway.xero.tenants import TenantReader
from gateway.xero.vault import Vault

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def _expiry(row: ConnectionRow, now: float) -> str:
    if not row.active:
        return "-"
    state = "valid" if row.access_expires_at > now else "expired"
    return f"{when(row.access_expires_at)} ({state})"


def _rows(rows: list[ConnectionRow], org_name: str, now: float) -> list[tuple[str, ...]]:
    return [
        (
            org_name,
            r.tenant_name,
            r.tenant_id,
            r.country_code or "-",
            r.source or "-",
            r.status_words,
            r.grant_id,
            r.connected_by,
            when(r.last_refresh_at) if r.last_refresh_at is not None else "never",
            _expiry(r, now),
            r.rate_budget or "-",
        )
        for r in rows
    ]


def _pick(rows: list[ConnectionRow], ref: str) -> str:
    """The grant a grant id, connection id or tenant id names (an active one first)."""
    for row in sorted(rows, key=lambda r: not r.active):
        if ref in (row.grant_id, row.connection_id, row.tenant_id):
            return row.grant_id
    raise NotFoundError(f"no Xero connection, grant or tenant {ref!r} in this organisation")


def build_commands(
    xero_sub: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    load: Loader,
    load_with_secret: Loader,
    run: StoreRunner,
) -> None:
    """Add `status` and `disconnect` to the `xero` command group."""

    def status(args: argparse.Namespace) -> int:
        config = load(args)

        async def action(store: Store) -> int:
            orgs = (
                [await find_org(store, args.org)] if args.org else await store.organisations.list()
            )
            now = system_clock()
            found: list[tuple[str, ...]] = []
            for org in orgs:
                found += _rows(await load_rows(store, org.id), org.name, now)
            headers = (
                "organisation",
                "tenant",
                "tenant id",
                "country",
                "source",
                "status",
                "grant",
                "connected by",
                "last refresh",
                "access token expires",
                "budget",
            )
            table(sys.stdout, headers, found)
            if not found:
                print("no Xero connections", file=sys.stderr)
            return 0

        return asyncio.run(run(config, action))

    def disconnect(args: argparse.Namespace) -> int:
        config = load_with_secret(args)  # the tokens are sealed with the secret key
        keys = Keys.derive(config.security.secret_key, config.security.previous_secret_keys)

        async def action(store: Store) -> int:
            org = await find_org(store, args.org)
            grant_id = _pick(await load_rows(store, org.id), args.ref)
            async with aiohttp.ClientSession() as client:
                endpoint = IdentityClient(config.xero, client)
                vault = Vault(
                    store=store,
                    endpoint=endpoint,
                    sealer=keys.at_rest,
                    clock=system_clock,
                    service_refresh_window=lambda _org_id: None,
                )
                connector = Connector(
                    store=store,
                    vault=vault,
                    endpoint=endpoint,
                    reader=TenantReader(config.xero),
                    clock=system_clock,
                )
                done = await connector.disconnect(
                    grant_id, audit=AuditEntry(actor="cli"), org_id=org.id
                )
            print(
                f"{grant_id}: {'disconnected' if done else 'was disconnected already'} ({org.name})"
            )
            return 0

        return asyncio.run(run(config, action))

    p = xero_sub.add_parser(
        "status",
        help="connections: tenants, country, status, last refresh, access token expiry",
    )
    p.add_argument("--org", help="only this organisation (name or id)")
    p.set_defaults(func=status)
    p = xero_sub.add_parser(
        "disconnect",
        help="revoke a Xero consent and delete its connections at Xero; unlink its tenants",
    )
    p.add_argument("ref", metavar="ID", help="a grant id, Xero connection id or tenant id")
    p.add_argument("--org", required=True, help="organisation name or id")
    p.set_defaults(func=disconnect)
