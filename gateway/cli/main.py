"""The `xero-gateway` command: serve, demo, check the config, and administer accounts."""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import os
import secrets
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from gateway.accounts.emails import email_problem, normalise_email
from gateway.accounts.onboarding import import_users
from gateway.accounts.passwords import Passwords, password_problem
from gateway.accounts.tenancy import find_org
from gateway.admin.tokens import ADMIN, SCOPES, create_admin_token, revoke_admin_token
from gateway.audit import OrgAdded, SealedValuesResealed, UserAdded, UserDisabled, UserEnabled
from gateway.cli.admins import build_commands as build_admin_commands
from gateway.cli.policy import build_commands
from gateway.cli.reminders import build_commands as build_reminder_commands
from gateway.cli.resets import add_reset_command
from gateway.cli.service_keys import build_commands as build_service_key_commands
from gateway.cli.terminal import parse_instant, table, when
from gateway.cli.xero import build_commands as build_xero_commands
from gateway.clock import system_clock
from gateway.config import Config, load_config
from gateway.crypto.keys import Keys
from gateway.errors import ConfigError, GatewayError, NotFoundError, UsageError
from gateway.policy import PolicyError
from gateway.store import EVENT_FIELDS, Store, event_document
from gateway.store.sealed import reseal_all

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_BROKEN_PIPE = 128 + 13  # as the shell reports a process ended by SIGPIPE
DEFAULT_CONFIG = "config.toml"


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("XERO_GATEWAY_CONFIG") or DEFAULT_CONFIG)


def _load(args: argparse.Namespace) -> Config:
    """The config for a command that works on the store: the secret key may be left out."""
    return load_config(_config_path(args), serving=False)


async def _with_store(config: Config, action: Callable[[Store], Awaitable[int]]) -> int:
    store = await Store.open(config.store.path, busy_timeout_ms=config.store.busy_timeout_ms)
    try:
        return await action(store)
    finally:
        await store.close()


def _store_folder_problem(path: str) -> str | None:
    folder = Path(path).parent
    if folder.is_dir():
        return None
    if folder.exists():
        return f"store.path: {folder} is not a folder"
    return f"store.path: the folder {folder} does not exist; create it or fix the path"


def cmd_check_config(args: argparse.Namespace) -> int:
    config = load_config(args.file)
    problem = _store_folder_problem(config.store.path)
    if problem:
        raise ConfigError([problem])
    print(f"{args.file}: ok")
    print(f"  front listener  http://{config.server.host}:{config.server.port}")
    print(f"  app (upstream)  {config.upstream.url}")
    print(f"  store           {config.store.path}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from gateway.runtime.runner import serve

    config = load_config(args.serve_config or _config_path(args))
    return asyncio.run(serve(config))


def cmd_demo(args: argparse.Namespace) -> int:
    from gateway.sandbox.demo import DEMO_ZONE, run_demo

    # A date or time without an offset is read in the shipped policy's zone, as policies are.
    at = parse_instant(args.at, ZoneInfo(DEMO_ZONE)).timestamp() if args.at else None
    return asyncio.run(run_demo(host=args.host, port=args.port, workdir=args.workdir, at=at))


def cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        print(f"{config.store.path}: schema version {await store.db.schema_version()}")
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_rotate_key(args: argparse.Namespace) -> int:
    config = load_config(_config_path(args))  # needs the secret keys, as serve does
    keys = Keys.derive(config.security.secret_key, config.security.previous_secret_keys)

    async def action(store: Store) -> int:
        counts = await reseal_all(store.db, keys.at_rest)
        for count in counts:
            print(
                f"{count.column}: {count.resealed} re-sealed with the current key, "
                f"{count.current} already current"
            )
        resealed = sum(count.resealed for count in counts)
        current = sum(count.current for count in counts)
        event = SealedValuesResealed(
            columns=tuple(count.column for count in counts), resealed=resealed, current=current
        )
        await store.audit.record(event, at=system_clock(), actor="cli")
        print(
            f"{resealed} value(s) re-sealed, {current} already current: every value at rest now "
            "opens with the current secret_key alone."
        )
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_xero_webhook_signing_key(args: argparse.Namespace) -> int:
    """Print the key the app checks forwarded webhook events with (hex), from the secret key."""
    config = load_config(_config_path(args))  # needs the secret keys, as serve does
    keys = Keys.derive(config.security.secret_key, config.security.previous_secret_keys)
    print(keys.webhook_forward.current.material.hex())
    if len(keys.webhook_forward.keys) > 1:
        print(
            "note: previous_secret_keys are configured; forwards carry a signature under each"
            " of their keys too, until they leave the config",
            file=sys.stderr,
        )
    return EXIT_OK


def cmd_org_add(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        org = await store.organisations.add(name=args.name, now=system_clock())
        await store.audit.record(
            OrgAdded(org_id=org.id, name=org.name), at=org.created_at, actor="cli"
        )
        print(org.id)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_org_list(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        rows = [(o.id, o.name, when(o.created_at)) for o in await store.organisations.list()]
        table(sys.stdout, ("id", "name", "created"), rows)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def _read_password(args: argparse.Namespace) -> tuple[str, bool]:
    """The new user's password and whether it was generated (and so must be shown once)."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if args.generate_password or not sys.stdin.isatty():
        return secrets.token_urlsafe(15), True
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UsageError("the two passwords differ")
    return first, False


def cmd_user_add(args: argparse.Namespace) -> int:
    config = _load(args)
    email = normalise_email(args.email)
    problem = email_problem(email)
    if problem:
        raise UsageError(f"--email: {problem}")
    password, generated = _read_password(args)
    problem = password_problem(password)
    if problem:
        raise UsageError(f"password {problem}")

    async def action(store: Store) -> int:
        org = await find_org(store, args.org)
        now = system_clock()
        user = await store.users.add(
            org_id=org.id,
            email=email,
            display_name=args.name,
            role=args.role,
            password_hash=Passwords().hash(password),
            now=now,
        )
        added = UserAdded(user_id=user.id, org_id=org.id, email=user.email, role=user.role)
        await store.audit.record(added, at=now, actor="cli")
        print(user.id)
        if generated:
            print(f"password: {password}", file=sys.stderr)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_user_list(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        org_id = (await find_org(store, args.org)).id if args.org else None
        users = await store.users.list(org_id)
        orgs = {o.id: o.name for o in await store.organisations.list()}
        rows = [
            (
                u.id,
                u.email,
                u.display_name,
                u.role,
                orgs.get(u.org_id, u.org_id),
                "disabled" if u.disabled else "active",
            )
            for u in users
        ]
        table(sys.stdout, ("id", "email", "name", "role", "organisation", "status"), rows)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_user_set_disabled(args: argparse.Namespace) -> int:
    config = _load(args)
    disabled = args.user_command == "disable"

    async def action(store: Store) -> int:
        user = await store.users.find_by_email(normalise_email(args.email))
        if user is None:
            raise NotFoundError(f"no user has the email {args.email!r}")
        now = system_clock()
        # Disabling also ends the user's sessions, in every running gateway within seconds.
        await store.users.set_disabled(user.id, disabled, now=now)
        change = UserDisabled if disabled else UserEnabled
        await store.audit.record(change(user_id=user.id, org_id=user.org_id), at=now, actor="cli")
        print(f"{'disabled' if disabled else 'enabled'} {user.email}")
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_user_import(args: argparse.Namespace) -> int:
    config = _load(args)
    try:
        with open(args.file, newline="", encoding="utf-8-sig") as handle:
            text = handle.read()
    except OSError as exc:
        raise GatewayError(f"cannot read {args.file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise GatewayError(f"{args.file} is not UTF-8 text: {exc.reason}") from None

    async def action(store: Store) -> int:
        result = await import_users(
            store, text, passwords=Passwords(), now=system_clock(), create_orgs=args.create_orgs
        )
        print(f"imported {len(result.users)} users", file=sys.stderr)
        if result.generated:
            # New passwords are shown once, as CSV on stdout, for the admin to hand out.
            writer = csv.writer(sys.stdout)
            writer.writerow(("email", "password"))
            writer.writerows(result.generated)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_admin_token_create(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        raw, token = await create_admin_token(
            store,
            name=args.name,
            scopes=args.scope,
            ttl_seconds=args.days * 86400,
            now=system_clock(),
            by="cli",
        )
        print(f"{token.id} expires {when(token.expires_at)}", file=sys.stderr)
        print(raw)  # shown this once: only its hash is stored
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_admin_token_list(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        now = system_clock()
        rows = [
            (
                t.id,
                t.name,
                ",".join(sorted(t.scopes)),
                when(t.expires_at),
                "revoked" if t.revoked_at else ("active" if t.usable(now) else "expired"),
                when(t.last_used_at) if t.last_used_at else "never",
            )
            for t in await store.admin_tokens.list()
        ]
        table(sys.stdout, ("id", "name", "scopes", "expires", "status", "last used"), rows)
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_admin_token_revoke(args: argparse.Namespace) -> int:
    config = _load(args)

    async def action(store: Store) -> int:
        await revoke_admin_token(store, args.token_id, now=system_clock(), by="cli")
        print(f"revoked {args.token_id}")
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def cmd_audit_export(args: argparse.Namespace) -> int:
    config = _load(args)
    since = parse_instant(args.since).timestamp() if args.since else None
    until = parse_instant(args.until).timestamp() if args.until else None

    async def action(store: Store) -> int:
        writer = csv.writer(sys.stdout) if args.format == "csv" else None
        if writer:
            writer.writerow(EVENT_FIELDS)
        async for event in store.audit.iterate(since=since, until=until):
            row = event_document(event, when=when)
            if writer:
                writer.writerow([*list(row.values())[:-1], json.dumps(event.detail)])
            else:
                print(json.dumps(row, separators=(",", ":")))
        return EXIT_OK

    return asyncio.run(_with_store(config, action))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xero-gateway",
        description="Sign-in and two-factor rules in front of any Xero-connected web app.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"config file (default: $XERO_GATEWAY_CONFIG or {DEFAULT_CONFIG})",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the gateway")
    p.add_argument("--config", dest="serve_config", metavar="FILE", help="config file")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="run the gateway in front of a sample app, with demo accounts")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="gateway port (default 8080; 0 = any)")
    p.add_argument("--workdir", type=Path, help="where the demo keeps its database (default: temp)")
    p.add_argument(
        "--at",
        metavar="DATE",
        help=(
            "decide policies as if it were this date or date-time (e.g. 2027-01-05); codes and"
            " sessions keep real time, so a real authenticator app works; demo only"
        ),
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("check-config", help="check a config file and report every problem")
    p.add_argument("file", metavar="FILE")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("migrate", help="create or upgrade the database schema")
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser(
        "rotate-key",
        help="re-seal every value kept encrypted in the store with the current secret_key",
    )
    p.set_defaults(func=cmd_rotate_key)

    org = sub.add_parser("org", help="organisations (the app's customers)")
    org_sub = org.add_subparsers(dest="org_command", required=True, metavar="ACTION")
    p = org_sub.add_parser("add", help="add an organisation; prints its id")
    p.add_argument("name")
    p.set_defaults(func=cmd_org_add)
    p = org_sub.add_parser("list", help="list organisations")
    p.set_defaults(func=cmd_org_list)

    user = sub.add_parser("user", help="user accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    p = user_sub.add_parser("add", help="add a user; prints its id")
    p.add_argument("--org", required=True, help="organisation name or id")
    p.add_argument("--email", required=True)
    p.add_argument("--name", required=True, help="display name")
    p.add_argument("--role", choices=("principal", "member"), default="member")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    group.add_argument(
        "--generate-password", action="store_true", help="generate one and print it to stderr"
    )
    p.set_defaults(func=cmd_user_add)
    p = user_sub.add_parser("list", help="list users")
    p.add_argument("--org", help="only this organisation (name or id)")
    p.set_defaults(func=cmd_user_list)
    for action, help_text in (
        ("disable", "stop a user signing in and end their sessions"),
        ("enable", "let a disabled user sign in again"),
    ):
        p = user_sub.add_parser(action, help=help_text)
        p.add_argument("email")
        p.set_defaults(func=cmd_user_set_disabled)
    add_reset_command(user_sub, load=_load, run=_with_store)
    p = user_sub.add_parser(
        "import", help="add users from a CSV file (columns: org,email,name,role[,password])"
    )
    p.add_argument("file", metavar="CSV")
    p.add_argument("--create-orgs", action="store_true", help="add organisations not yet known")
    p.set_defaults(func=cmd_user_import)

    build_commands(sub, _load, _with_store)

    build_admin_commands(
        sub,
        load=_load,
        load_with_secret=lambda args: load_config(_config_path(args)),
        run=_with_store,
    )

    tokens = sub.add_parser("admin-token", help="tokens for the admin API")
    tokens_sub = tokens.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    p = tokens_sub.add_parser("create", help="mint a token; prints it once")
    p.add_argument("--name", required=True, help="who or what uses it, e.g. 'ops laptop'")
    p.add_argument(
        "--scope",
        action="extend",
        nargs="+",
        required=True,
        choices=sorted({*SCOPES, ADMIN}),
        help="one or more (--scope A B, or --scope A --scope B); 'admin' grants all",
    )
    p.add_argument("--days", type=float, default=30, help="lifetime in days (default 30)")
    p.set_defaults(func=cmd_admin_token_create)
    p = tokens_sub.add_parser("list", help="list tokens (never the secrets)")
    p.set_defaults(func=cmd_admin_token_list)
    p = tokens_sub.add_parser("revoke", help="revoke a token for good")
    p.add_argument("token_id", metavar="ID")
    p.set_defaults(func=cmd_admin_token_revoke)

    build_service_key_commands(
        sub,
        load=_load,
        load_with_secret=lambda args: load_config(_config_path(args)),
        run=_with_store,
    )
    xero = sub.add_parser("xero", help="Xero custody")
    xero_sub = xero.add_subparsers(dest="xero_command", required=True, metavar="ACTION")
    p = xero_sub.add_parser(
        "webhook-signing-key",
        help="print the key (hex) the app checks forwarded Xero webhook events with",
    )
    p.set_defaults(func=cmd_xero_webhook_signing_key)
    build_xero_commands(
        xero_sub,
        load=_load,
        load_with_secret=lambda args: load_config(_config_path(args)),
        run=_with_store,
    )

    build_reminder_commands(sub, load=_load, run=_with_store)

    audit = sub.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    p = audit_sub.add_parser("export", help="write audit events to stdout")
    p.add_argument("--since", help="ISO date or date-time (UTC unless a zone is given)")
    p.add_argument("--until", help="ISO date or date-time (UTC unless a zone is given)")
    p.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    p.set_defaults(func=cmd_audit_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"config: {problem}", file=sys.stderr)
        return EXIT_USAGE
    except UsageError as exc:
        print(f"xero-gateway: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except PolicyError as exc:
        for problem in exc.problems:
            print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    except GatewayError as exc:
        print(f"xero-gateway: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as a program killed by SIGPIPE
        # would, and keep Python from complaining when it flushes stdout on the way out.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
