"""The `xero-gateway policy …` and `org …-tenant` commands: check, apply, inspect, simulate."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, TextIO

from gateway.accounts.tenancy import TenantLinkError, find_org, link_tenant, unlink_tenant
from gateway.cli.terminal import parse_moment, table
from gateway.clock import system_clock
from gateway.config import Config
from gateway.enforcement.policy_files import (
    apply_policies,
    duplicate_ids,
    load_policy_file,
    load_policy_path,
    policy_files,
)
from gateway.enforcement.reports import readiness_report
from gateway.errors import UsageError
from gateway.policy import Policy, PolicyError, lint
from gateway.store import AuditEntry, Store

EXIT_OK, EXIT_FAILED = 0, 1

Loader = Callable[[argparse.Namespace], Config]
StoreRunner = Callable[[Config, Callable[[Store], Awaitable[int]]], Coroutine[Any, Any, int]]


def _now() -> dt.datetime:
    return dt.datetime.fromtimestamp(system_clock(), dt.UTC)


def cmd_lint(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    failed = warned = False
    now = _now()
    loaded: list[tuple[Path, Policy]] = []
    for name in args.files:
        try:
            files = policy_files(name)  # a folder stands for its *.toml files, as in apply
        except PolicyError as exc:
            files = []
            failed = True
            err.writelines(f"error: {problem}\n" for problem in exc.problems)
        for file in files:
            try:
                policy = load_policy_file(file)
            except PolicyError as exc:
                failed = True
                err.writelines(f"error: {problem}\n" for problem in exc.problems)
                continue
            loaded.append((file, policy))
            warnings = lint(policy, now=now)
            for warning in warnings:
                warned = True
                err.write(f"warning: {file}: {warning.field}: {warning.message}\n")
            if not warnings:
                out.write(f"{file}: ok\n")
    for problem in duplicate_ids(loaded):  # apply refuses these, so lint reports them too
        failed = True
        err.write(f"error: {problem}\n")
    return EXIT_FAILED if failed or (warned and args.strict) else EXIT_OK


def build_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], load: Loader, run: StoreRunner
) -> None:
    """Add the policy commands, and tenant linking under `org`, to the main parser."""

    def with_store(action: Callable[[argparse.Namespace, Store], Awaitable[int]]) -> Any:
        def command(args: argparse.Namespace) -> int:
            config = load(args)
            return asyncio.run(run(config, lambda store: action(args, store)))

        return command

    policy = sub.add_parser("policy", help="2FA policies: lint, apply, list, show, simulate")
    psub = policy.add_subparsers(dest="policy_command", required=True, metavar="ACTION")

    p = psub.add_parser("lint", help="check policy files: errors and compliance warnings")
    p.add_argument("files", nargs="+", metavar="PATH", help="a policy file, or a folder of them")
    p.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    p.set_defaults(func=lambda args: cmd_lint(args, sys.stdout, sys.stderr))

    p = psub.add_parser("apply", help="load a policy file or folder into the store (idempotent)")
    p.add_argument("path", metavar="PATH")
    p.set_defaults(func=with_store(_apply))

    p = psub.add_parser("list", help="list stored policies")
    p.set_defaults(func=with_store(_list))

    p = psub.add_parser("show", help="print one stored policy as JSON")
    p.add_argument("policy_id", metavar="ID")
    p.set_defaults(func=with_store(_show))

    p = psub.add_parser(
        "simulate", help="who is in scope, enrolled, and blocked at each deadline, as of DATE"
    )
    p.add_argument(
        "--at",
        required=True,
        metavar="DATE",
        help="ISO date or date-time; without an offset it is read in each policy's time zone",
    )
    p.add_argument("--org", help="only this organisation (name or id)")
    p.set_defaults(func=with_store(_simulate))

    org = sub.choices["org"]
    osub = next(a for a in org._actions if isinstance(a, argparse._SubParsersAction))
    p = osub.add_parser("link-tenant", help="record a Xero tenant connected by an organisation")
    p.add_argument("org", help="organisation name or id")
    p.add_argument("--tenant-id", required=True)
    p.add_argument("--name", required=True, help="the tenant's name in Xero")
    p.add_argument("--country", required=True, help="Organisation.CountryCode, e.g. AU")
    p.set_defaults(func=with_store(_link))
    p = osub.add_parser("unlink-tenant", help="mark a tenant's connection inactive")
    p.add_argument("org", help="organisation name or id")
    p.add_argument("tenant_id")
    p.set_defaults(func=with_store(_unlink))


async def _apply(args: argparse.Namespace, store: Store) -> int:
    policies = load_policy_path(args.path)
    now = _now()
    for policy in policies:
        for warning in lint(policy, now=now):
            print(f"warning: {policy.id}: {warning.field}: {warning.message}", file=sys.stderr)
    for applied in await apply_policies(store, policies, now=system_clock(), by="cli"):
        print(f"{applied.action:<9} {applied.policy_id} (revision {applied.version})")
    return EXIT_OK


async def _list(args: argparse.Namespace, store: Store) -> int:
    rows = []
    for stored in await store.policies.list():
        doc = stored.document
        rows.append(
            (
                stored.id,
                stored.version,
                "enabled" if stored.enabled else "disabled",
                ",".join(doc.get("scope", {}).get("countries", [])),
                doc.get("schedule", {}).get("deadline", ""),
                doc.get("description", ""),
            )
        )
    table(sys.stdout, ("id", "revision", "status", "countries", "deadline", "description"), rows)
    return EXIT_OK


async def _show(args: argparse.Namespace, store: Store) -> int:
    stored = await store.policies.get(args.policy_id)
    print(
        json.dumps(
            {"revision": stored.version, "enabled": stored.enabled, "document": stored.document},
            indent=2,
            ensure_ascii=False,
        )
    )
    return EXIT_OK


async def _simulate(args: argparse.Namespace, store: Store) -> int:
    at = parse_moment(args.at)
    org = await find_org(store, args.org) if args.org else None
    names = {o.id: o.name for o in await store.organisations.list()}
    reports = await readiness_report(store, at)
    if at.tzinfo is None:
        print(f"As of {args.at.strip()}, read in each policy's time zone:")
    else:
        print(f"As of {at.isoformat()}:")
    rows = []
    for report in reports:
        status = "" if report.enabled else " (disabled)"
        for line in report.orgs:
            if org is None or line.org_id == org.id:
                rows.append(
                    (
                        report.policy_id + status,
                        report.deadline.isoformat(),
                        names.get(line.org_id, line.org_id),
                        line.in_scope,
                        line.enrolled,
                        line.blocked_at_deadline,
                    )
                )
        if org is None:
            rows.append(
                (
                    report.policy_id + status,
                    report.deadline.isoformat(),
                    "(all)",
                    report.in_scope,
                    report.enrolled,
                    report.blocked_at_deadline,
                )
            )
    if not reports:
        print("No policies are stored: load some with `xero-gateway policy apply policies/`.")
    elif not rows:
        print(f"No policy applies to the users of {org.name if org else 'any organisation'}.")
    else:
        table(
            sys.stdout,
            ("policy", "deadline", "organisation", "in scope", "enrolled", "blocked at deadline"),
            rows,
        )
    return EXIT_OK


_FLAGS = {"tenant_id": "--tenant-id", "name": "--name", "country_code": "--country"}


def _link_usage(args: argparse.Namespace, exc: TenantLinkError) -> UsageError:
    """The link's problems in terms of the command's own flags."""
    problems = []
    for field, message in exc.problems:
        if field == "country_code":  # the command takes any case, so no hint about case
            problems.append(f"--country {args.country!r} is not an ISO 3166-1 alpha-2 code")
        else:
            problems.append(f"{_FLAGS[field]}: {message}")
    return UsageError("; ".join(problems))


async def _link(args: argparse.Namespace, store: Store) -> int:
    org = await find_org(store, args.org)
    try:
        change = await link_tenant(
            store,
            org_id=org.id,
            tenant_id=args.tenant_id,
            name=args.name,
            country_code=args.country.strip().upper(),
            now=system_clock(),
            audit=AuditEntry(actor="cli"),
        )
    except TenantLinkError as exc:
        raise _link_usage(args, exc) from None
    tenant = change.after
    if change.changed:
        print(f"linked {tenant.tenant_id} ({tenant.country_code}) to {org.id}")
    else:
        print(f"{tenant.tenant_id} ({tenant.country_code}) was already linked to {org.id}")
    return EXIT_OK


async def _unlink(args: argparse.Namespace, store: Store) -> int:
    org = await find_org(store, args.org)
    change = await unlink_tenant(
        store,
        org_id=org.id,
        tenant_id=args.tenant_id,
        now=system_clock(),
        audit=AuditEntry(actor="cli"),
    )
    if change.changed:
        print(f"unlinked {args.tenant_id} from {org.id}")
    else:
        print(f"{args.tenant_id} was already unlinked from {org.id}")
    return EXIT_OK
