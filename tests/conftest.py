"""Shared fixtures: a real gateway on loopback before the real sample app, on a real SQLite file."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from argon2 import PasswordHasher
from playwright.async_api import Browser, async_playwright
from yarl import URL

from gateway.accounts.passwords import Passwords
from gateway.clock import ManualClock
from gateway.config import Config, build_config
from gateway.enforcement.policy_files import load_policy_file
from gateway.policy import policy_to_document
from gateway.runtime.runner import Gateway
from gateway.runtime.server import start_site
from gateway.sandbox.demo import DEMO_PASSWORD, seed_demo, seed_demo_xero
from gateway.sandbox.sample_app import create_sample_app
from gateway.sandbox.xero_emulator import DEMO_CLIENT, EmulatedClient, XeroEmulator
from gateway.sandbox.xero_emulator.grants import s256
from gateway.services import Services
from gateway.store import Store
from tests.proxy_stack import Stack, make_stack
from tests.stand_ins import Mailbox, Provider, running_mailbox, serve_http

SECRET = "test-secret-key-that-is-long-enough-0123456789"
START = 1_798_000_000.0  # a fixed instant in December 2026


def fast_passwords() -> Passwords:
    # Real Argon2id, with the cost turned down so the suite stays quick.
    return Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store on a real SQLite file of its own, closed after the test."""
    opened = await Store.open(tmp_path / "gateway.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
async def upstream_url() -> AsyncIterator[str]:
    runner, port = await start_site(
        create_sample_app(), "127.0.0.1", 0, max_line_size=8190, max_field_size=8190
    )
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "raw_path": request.raw_path,
            "headers": [[k, v] for k, v in request.headers.items()],
            "body": body.decode("latin-1"),
        }
    )


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """An app that answers every request with what reached it: every header, as received."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", _echo)
    runner, port = await start_site(app, "127.0.0.1", 0, max_line_size=8190, max_field_size=8190)
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@dataclass
class RunningGateway:
    url: URL
    services: Services
    clock: ManualClock
    gateway: Gateway | None = None

    @property
    def xero_url(self) -> URL:
        """Where the Xero listener is reached (only with ``[xero] client_id`` configured)."""
        listener = self.gateway.xero if self.gateway is not None else None
        assert listener is not None, "this gateway has no Xero listener"
        return URL(listener.url)

    def client(self, **kwargs: Any) -> aiohttp.ClientSession:
        """A browser-like client: keeps cookies (also for an IP host), never follows redirects."""
        return aiohttp.ClientSession(
            base_url=self.url, cookie_jar=aiohttp.CookieJar(unsafe=True), **kwargs
        )


GatewayFactory = Callable[..., Any]


def gateway_config(tmp_path: Path, app_url: str, **sections: dict[str, Any]) -> Config:
    raw: dict[str, dict[str, Any]] = {
        "server": {"host": "127.0.0.1", "port": 0},
        # A test that sets [xero] client_id gets the Xero listener too: never on a fixed port.
        "xero_proxy": {"host": "127.0.0.1", "port": 0},
        "upstream": {"url": app_url, "public_paths": ["/public/"], "read_timeout": 5.0},
        "store": {"path": str(tmp_path / "gateway.sqlite3")},
        "security": {"secret_key": SECRET, "cookie_secure": False},
        "logging": {"level": "WARNING", "format": "text"},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return build_config(raw, env={})


@pytest.fixture
async def make_gateway(
    tmp_path: Path, upstream_url: str, clock: ManualClock
) -> AsyncIterator[GatewayFactory]:
    started: list[Gateway] = []

    async def start(
        app_url: str | None = None, *, policies: bool = False, **sections: dict[str, Any]
    ) -> RunningGateway:
        """A gateway with the demo accounts; ``policies``: also the demo's Xero tenants and
        the shipped AU policy (so users of the AU organisation are in scope)."""
        config = gateway_config(tmp_path, app_url or upstream_url, **sections)
        gateway = await Gateway.open(config, clock=clock, passwords=fast_passwords())
        started.append(gateway)
        services = gateway.services
        await seed_demo(services.store, services.passwords, clock())
        if policies:
            await seed_demo_xero(services.store, clock())
            await services.decider.book.refresh()
        await gateway.start()
        return RunningGateway(
            url=URL(gateway.front.url), services=services, clock=clock, gateway=gateway
        )

    yield start
    for gateway in started:
        await gateway.stop()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    """The proxy alone between a real upstream and a minimal front (tests/proxy_stack.py)."""
    async with make_stack() as running:
        yield running


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    # The test client neither decompresses nor adds headers of its own unless asked.
    async with aiohttp.ClientSession(
        auto_decompress=False, skip_auto_headers=("Accept-Encoding", "User-Agent")
    ) as session:
        yield session


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway()
    return running


CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


async def sign_in(
    client: aiohttp.ClientSession,
    email: str = "ava@harbour.example",
    password: str = DEMO_PASSWORD,
    next_target: str = "/",
) -> aiohttp.ClientResponse:
    """Fill in the sign-in form as a browser would; returns the response to the POST."""
    page = await client.get("/_gateway/login", params={"next": next_target})
    match = CSRF_FIELD.search(await page.text())
    assert match, "the sign-in page has no CSRF field"
    return await client.post(
        "/_gateway/login",
        data={"email": email, "password": password, "csrf": match.group(1), "next": next_target},
        allow_redirects=False,
    )


SHIPPED_POLICY = Path(__file__).resolve().parent.parent / "policies" / "au-ato-2fa.toml"


async def cap_dismissals(store: Store, cap: int, *, now: float) -> None:
    """Store the shipped AU policy again with a cap on "Remind me later"."""
    document = policy_to_document(load_policy_file(SHIPPED_POLICY))
    document["prompt"] = {"max_dismissals": cap}
    stored = await store.policies.get("au-ato-2fa")
    await store.policies.replace(
        policy_id="au-ato-2fa",
        document=document,
        enabled=True,
        expected_version=stored.version,
        now=now,
        by="test",
    )


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    """The SMS provider's API, standing in on loopback (tests/stand_ins.py)."""
    fake = Provider()
    async with serve_http(fake.handle) as url:
        fake.url = url
        yield fake
        if fake.hold is not None:
            fake.hold.set()


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    """A real SMTP server on loopback that keeps every message (tests/stand_ins.py)."""
    async with running_mailbox() as box:
        yield box


@pytest.fixture
async def xero(clock: ManualClock) -> AsyncIterator[XeroEmulator]:
    """The Xero emulator on a free loopback port, on the test's clock (its expiries move with
    ``clock.advance``): the demo AU and NZ tenants, the demo app ``DEMO_CLIENT`` and the demo
    Xero user. ``xero.xero_settings()`` is a ``[xero]`` section pointing at it;
    ``xero.switches`` sets faults, ``xero.counters`` reads what it saw, and
    ``xero.state.add_client`` registers an app with another redirect URI."""
    async with XeroEmulator(clock=clock) as emulator:
        yield emulator


async def consent_code(
    session: aiohttp.ClientSession,
    xero: XeroEmulator,
    *,
    verifier: str,
    scopes: str = "openid profile email offline_access accounting.settings.read "
    "accounting.contacts accounting.transactions",
    client: EmulatedClient = DEMO_CLIENT,
    state: str = "st",
) -> str:
    """Walk the emulator's authorize step as a browser would (it consents at once); the code."""
    answer = await session.get(
        xero.authorize_url,
        params={
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": client.redirect_uris[0],
            "scope": scopes,
            "state": state,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        },
        allow_redirects=False,
    )
    assert answer.status == 302, await answer.text()
    back = URL(answer.headers["Location"])
    assert back.query.get("state") == state
    return back.query["code"]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Chromium's own background traffic is pointless on a closed network and slows start-up.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium, driven by Playwright; never a browser it downloads."""
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it with apt-get")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()
