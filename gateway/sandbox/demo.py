"""`xero-gateway demo`: the sample app and the gateway on loopback, seeded with demo accounts."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import socket
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp

from gateway.accounts.passwords import Passwords
from gateway.audit import OrgAdded, UserAdded
from gateway.clock import Clock, ShiftedClock, system_clock
from gateway.config import Config, build_config
from gateway.enforcement.policy_files import Applied, apply_policies, load_policy_path
from gateway.errors import NotFoundError
from gateway.ops.logs import configure_logging
from gateway.runtime.runner import Gateway, wait_for_stop_signal
from gateway.runtime.server import start_site
from gateway.sandbox.outbox_page import outbox_listener
from gateway.sandbox.sample_app import SampleSettings, create_sample_app
from gateway.sandbox.xero_emulator import AU_TENANT, NZ_TENANT, XeroEmulator
from gateway.store import AuditEntry, Store

DEMO_PASSWORD = "demo-password-2026"  # noqa: S105 - printed for the demo accounts on purpose
DEMO_ACTOR = "demo"  # who the audit trail says made the demo's organisations, users, tenants
# The shipped policy's zone: `demo --at` reads a date without an offset in it, as policies do.
DEMO_ZONE = "Australia/Sydney"
CONFIG_NAME = "gateway.toml"
READINESS_EXAMPLE = "/_gateway/admin/api/reports/readiness?at=2026-12-01"  # as in the README


@dataclass(frozen=True, kw_only=True)
class DemoAccount:
    org: str
    email: str
    name: str
    role: str


DEMO_ORGS = ("Harbour Accounting (AU)", "Kauri Design Studio (NZ)")
# The Xero tenant each demo organisation connects (the emulator's, real UUIDs), with its
# Organisation.CountryCode.
DEMO_TENANTS = (
    (DEMO_ORGS[0], AU_TENANT.tenant_id, AU_TENANT.name, AU_TENANT.country_code),
    (DEMO_ORGS[1], NZ_TENANT.tenant_id, NZ_TENANT.name, NZ_TENANT.country_code),
)
# policies/ of the repository, which the package also carries (a link in the source tree).
SHIPPED_POLICIES = Path(__file__).parent.parent / "shipped_policies"
DEMO_ACCOUNTS = (
    DemoAccount(org=DEMO_ORGS[0], email="ava@harbour.example", name="Ava Nguyen", role="principal"),
    DemoAccount(org=DEMO_ORGS[0], email="max@harbour.example", name="Max Taylor", role="member"),
    DemoAccount(org=DEMO_ORGS[1], email="nia@kauri.example", name="Nia Parata", role="principal"),
    DemoAccount(org=DEMO_ORGS[1], email="leo@kauri.example", name="Leo Smith", role="member"),
)


async def seed_demo(store: Store, passwords: Passwords, now: float) -> None:
    """Add the demo organisations and accounts unless they are there already."""
    org_ids = {}
    for name in DEMO_ORGS:
        org = await store.organisations.find_by_name(name)
        if org is None:
            org = await store.organisations.add(name=name, now=now)
            await store.audit.record(OrgAdded(org_id=org.id, name=name), at=now, actor=DEMO_ACTOR)
        org_ids[name] = org.id
    password_hash = passwords.hash(DEMO_PASSWORD)
    for account in DEMO_ACCOUNTS:
        if await store.users.find_by_email(account.email) is None:
            user = await store.users.add(
                org_id=org_ids[account.org],
                email=account.email,
                display_name=account.name,
                role=account.role,
                password_hash=password_hash,
                now=now,
            )
            added = UserAdded(user_id=user.id, org_id=user.org_id, email=user.email, role=user.role)
            await store.audit.record(added, at=now, actor=DEMO_ACTOR)


async def apply_demo_policies(store: Store, now: float) -> list[Applied]:
    """Apply the shipped policies, as the demo's admin."""
    return await apply_policies(store, load_policy_path(SHIPPED_POLICIES), now=now, by=DEMO_ACTOR)


async def seed_demo_xero(store: Store, now: float) -> list[Applied]:
    """Link each demo organisation to its Xero tenant by hand (as ``org link-tenant`` would,
    with no Xero behind it) and apply the shipped policies."""
    for org_name, tenant_id, tenant_name, country in DEMO_TENANTS:
        org = await store.organisations.find_by_name(org_name)
        if org is None:
            raise NotFoundError(f"demo organisation {org_name!r} is missing; seed accounts first")
        await store.tenants.link(
            org_id=org.id,
            tenant_id=tenant_id,
            name=tenant_name,
            country_code=country,
            now=now,
            audit=AuditEntry(actor=DEMO_ACTOR),
        )
    return await apply_demo_policies(store, now)


class DemoConnectError(Exception):
    """The demo could not connect an organisation to the emulated Xero at start."""


def _loopback(host: str) -> str:
    """The address a browser on this machine reaches a listener on ``host`` at."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - compared only


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


async def connect_demo_orgs(url: str, emulator: XeroEmulator) -> None:
    """Connect each demo organisation to its tenant through the gateway's own connect flow, as
    its principal would in a browser: sign in, Connect Xero, consent (the emulator consents at
    once, to the tenant chosen here), back to the callback. Afterwards the emulator consents to
    the AU tenant, for the demo's *Reconnect* button (its one Xero user stands in for both
    organisations' principals)."""
    for org, tenant_id, _name, _country in DEMO_TENANTS:
        principal = next(a for a in DEMO_ACCOUNTS if a.org == org and a.role == "principal")
        emulator.state.consent_tenants = (tenant_id,)
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as client:
            page = await (await client.get(f"{url}/_gateway/login")).text()
            csrf = re.search(r'name="csrf" value="([^"]+)"', page)
            if csrf is None:
                raise DemoConnectError("the sign-in page has no form")
            form = {"email": principal.email, "password": DEMO_PASSWORD, "csrf": csrf[1]}
            steps = [await client.post(f"{url}/_gateway/login", data=form, allow_redirects=False)]
            steps.append(await client.get(f"{url}/_gateway/xero/connect", allow_redirects=False))
            for _ in range(2):  # to Xero's consent, then back to the gateway's callback
                location = steps[-1].headers.get("Location", "")
                target = location if location.startswith("http") else f"{url}{location}"
                steps.append(await client.get(target, allow_redirects=False))
            if [r.status for r in steps] != [303, 303, 302, 303]:
                answer = await steps[-1].text()
                raise DemoConnectError(f"{org} could not be connected to Xero: {answer[:200]}")
    emulator.state.consent_tenants = (DEMO_TENANTS[0][1],)


def demo_settings(
    *, host: str, port: int, upstream_url: str, workdir: Path, secret_key: str | None = None
) -> dict[str, dict[str, Any]]:
    """The embedded defaults: plain http on loopback, a fresh key, the sample app upstream."""
    return {
        "server": {"host": host, "port": port},
        "upstream": {"url": upstream_url, "public_paths": ["/public/"]},
        "store": {"path": str(workdir / "gateway.sqlite3")},
        "security": {
            "secret_key": secret_key or secrets.token_urlsafe(48),
            "cookie_secure": False,
        },
        "logging": {"level": "WARNING", "format": "text"},
        # The Xero listener (served once [xero] is configured) on a free loopback port; the
        # sample app is told where it is once the gateway has started.
        "xero_proxy": {"host": "127.0.0.1", "port": 0},
        # Codes go to the log and the demo's outbox page, so no phone or mail server is needed.
        "sms": {"driver": "log"},
        "email": {"driver": "log"},
    }


def demo_config(*, host: str, port: int, upstream_url: str, workdir: Path) -> Config:
    """The demo's config (see :func:`demo_settings`)."""
    settings = demo_settings(host=host, port=port, upstream_url=upstream_url, workdir=workdir)
    return build_config(settings, env={})


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(value)  # strings and lists of strings: JSON's spelling is TOML's too


def write_config(path: Path, settings: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``settings`` as a TOML config file only its owner can read (it holds the key)."""
    lines = [
        "# Written by `xero-gateway demo` for the running demo. Point the CLI at it with",
        f"#   export XERO_GATEWAY_CONFIG={path}",
    ]
    for section, values in settings.items():
        lines += ["", f"[{section}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")


async def run_demo(*, host: str, port: int, workdir: Path | None, at: float | None = None) -> int:
    workdir = workdir or Path(tempfile.mkdtemp(prefix="xero-gateway-demo-"))
    workdir.mkdir(parents=True, exist_ok=True)
    sample_settings = SampleSettings()
    sample_runner, sample_port = await start_site(
        create_sample_app(sample_settings),
        "127.0.0.1",
        0,
        max_line_size=8190,
        max_field_size=8190,
    )
    # Xero itself is emulated on a loopback port of its own; its consents come back to the
    # gateway's callback, so the gateway's port is settled first.
    emulator = XeroEmulator()
    await emulator.start()
    try:
        return await _run_with_emulator(
            emulator,
            host=host,
            port=port,
            workdir=workdir,
            sample_port=sample_port,
            sample_settings=sample_settings,
            at=at,
        )
    finally:
        await emulator.stop()
        await sample_runner.cleanup()


async def _run_with_emulator(
    emulator: XeroEmulator,
    *,
    host: str,
    port: int,
    workdir: Path,
    sample_port: int,
    sample_settings: SampleSettings,
    at: float | None,
) -> int:
    port = port or _free_port(host)
    settings = demo_settings(
        host=host, port=port, upstream_url=f"http://127.0.0.1:{sample_port}", workdir=workdir
    )
    callback = f"http://{_loopback(host)}:{port}/_gateway/xero/callback"
    emulator.allow_redirect_uri(callback)
    settings["xero"] = {**emulator.xero_settings(), "redirect_uri": callback}
    config = build_config(settings, env={})
    configure_logging(config.logging.level, config.logging.format)
    # --at moves only the time policies are decided at (deadline, grace, blocked): codes,
    # sessions and cookies keep real time, so a real authenticator app's codes still match.
    policy_clock: Clock = system_clock if at is None else ShiftedClock(at)
    store = await Store.open(config.store.path)
    try:
        await seed_demo(store, Passwords(), policy_clock())
        await apply_demo_policies(store, policy_clock())
    finally:
        await store.close()
    try:
        gateway = await start_demo_gateway(config, system_clock, policy_clock=policy_clock)
    except OSError as exc:
        print(f"xero-gateway demo: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        print("Try another port: xero-gateway demo --port 8090", file=sys.stderr)
        return 1
    if gateway.xero is not None:
        sample_settings.xero_url = gateway.xero.url  # the sample app's backend calls Xero here
        settings["xero_proxy"]["port"] = gateway.xero.http.port
    try:
        await connect_demo_orgs(f"http://{_loopback(host)}:{port}", emulator)
        # The config as it runs, for the CLI and the admin API's examples.
        config_path = workdir / CONFIG_NAME
        write_config(config_path, settings)
        _print_welcome(
            gateway.front.url,
            workdir,
            config_path,
            policy_clock(),
            _outbox_url(gateway),
            emulator_url=emulator.url,
            xero_url=sample_settings.xero_url or None,
        )
        await wait_for_stop_signal()
    finally:
        print("\nStopping the demo…", flush=True)
        await gateway.stop()
    return 0


async def start_demo_gateway(
    config: Config, clock: Clock, *, policy_clock: Clock | None = None
) -> Gateway:
    """The gateway, with the outbox page beside it when a ``log`` driver is chosen; policies
    are decided at ``policy_clock`` (the demo's --at), everything else at ``clock``."""
    gateway = await Gateway.open(config, clock=clock, policy_clock=policy_clock)
    outbox = gateway.services.sending.outbox
    if outbox is not None:
        gateway.add_listener(outbox_listener(outbox, config))
    await gateway.start()  # if a listener cannot start, this stops the rest and raises
    return gateway


def _outbox_url(gateway: Gateway) -> str | None:
    return next((lst.url for lst in gateway.listeners if lst.name == "demo-outbox"), None)


def _cli_command() -> str:
    """How to call the CLI installed beside this Python: `.venv/bin/xero-gateway` from the repo."""
    exe = Path(sys.executable).parent / "xero-gateway"
    if not exe.exists():
        return "xero-gateway"
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return str(exe)


def _print_welcome(
    url: str,
    workdir: Path,
    config_path: Path,
    now: float,
    outbox_url: str | None = None,
    *,
    emulator_url: str | None = None,
    xero_url: str | None = None,
) -> None:
    when = dt.datetime.fromtimestamp(now, ZoneInfo(DEMO_ZONE)).isoformat(timespec="minutes")
    cli = _cli_command()
    lines = [
        "",
        "Xero MFA gateway demo",
        "",
        f"  Demo time: {when} ({DEMO_ZONE}). Policy au-ato-2fa asks users of the AU organisation",
        "  for 2FA until 31 December 2026 (Sydney) and blocks them after it;",
        "  the NZ organisation is out of scope. Try --at 2027-01-05 for the blocked state.",
        "",
        f"  Open {url}/ and sign in with one of these accounts",
        f"  (password for all: {DEMO_PASSWORD}):",
        "",
    ]
    for account in DEMO_ACCOUNTS:
        lines.append(f"    {account.email:<22} {account.role:<10} {account.org}")
    lines += [
        "",
        f"  Public page without sign-in: {url}/public/hello",
        "  Your own 2FA, once set up (method, backup, recovery codes, devices, sign-ins):",
        f"    {url}/_gateway/mfa/settings   Principals reset their team's: {url}/_gateway/mfa/team",
        *(
            [f"  Codes sent by SMS and email (demo outbox, no phone needed): {outbox_url}/"]
            if outbox_url
            else []
        ),
        *(
            [
                f"  Xero is emulated at {emulator_url} (its AU and NZ organisations, real UUIDs);",
                "  both demo organisations were connected through it at start. Connections,",
                f"  Reconnect and Disconnect (principals): {url}/_gateway/xero",
            ]
            if emulator_url
            else []
        ),
        *(
            [
                f"  Xero invoices, read by the sample app through the gateway: {url}/xero/invoices",
                f"  (its backend calls the Xero listener at {xero_url} with xero-python)",
            ]
            if xero_url
            else []
        ),
        f"  Health: {url}/_gateway/health   Metrics: {url}/_gateway/metrics",
        f"  Database: {workdir / 'gateway.sqlite3'}",
        "",
        "  The command line and the admin API on this demo (from another terminal):",
        "",
        f"    export XERO_GATEWAY_CONFIG={config_path}",
        f"    {cli} user list",
        f"    {cli} xero status",
        f"    TOKEN=$({cli} admin-token create --name demo --scope admin)",
        f'    curl -H "Authorization: Bearer $TOKEN" "{url}{READINESS_EXAMPLE}"',
        "",
        "  The admin console (dashboard, policies, people, audit trail): make an admin, add the",
        f"  key it prints to an authenticator app, and sign in at {url}/_gateway/admin/",
        "",
        f"    {cli} admin add you@example.com --name You",
        "",
        "  Press Ctrl-C to stop.",
        "",
    ]
    print("\n".join(lines), flush=True)


__all__ = [
    "DEMO_ACCOUNTS",
    "DEMO_PASSWORD",
    "DEMO_ZONE",
    "apply_demo_policies",
    "connect_demo_orgs",
    "demo_config",
    "demo_settings",
    "run_demo",
    "seed_demo",
    "write_config",
]
