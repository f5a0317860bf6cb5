"""A gateway connected to the Xero emulator, for the connect-flow tests: both real, on loopback."""

from __future__ import annotations

import socket
from typing import Any

import aiohttp
from yarl import URL

from gateway.enforcement.policy_files import apply_policies, load_policy_path
from gateway.sandbox.demo import SHIPPED_POLICIES
from gateway.sandbox.xero_emulator import XeroEmulator
from gateway.store import Store
from tests.conftest import GatewayFactory, RunningGateway, sign_in

CALLBACK = "/_gateway/xero/callback"
COOKIE = "gw-session"
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def xero_gateway(
    make_gateway: GatewayFactory,
    xero: XeroEmulator,
    xero_section: dict[str, Any] | None = None,
    **sections: dict[str, Any],
) -> RunningGateway:
    """A gateway with the demo accounts and the shipped policies but no tenant linked, its
    ``[xero]`` pointing at the emulator, whose app may send consents back to its callback."""
    port = free_port()
    redirect = f"http://127.0.0.1:{port}{CALLBACK}"
    xero.allow_redirect_uri(redirect)
    settings = {**xero.xero_settings(), "redirect_uri": redirect, **(xero_section or {})}
    running: RunningGateway = await make_gateway(
        server={"host": "127.0.0.1", "port": port}, xero=settings, **sections
    )
    await apply_shipped_policies(running.services.store, running.clock())
    await running.services.decider.book.refresh()
    return running


async def apply_shipped_policies(store: Store, now: float) -> None:
    await apply_policies(store, load_policy_path(SHIPPED_POLICIES), now=now, by="test")


async def signed_in(gateway: RunningGateway, email: str) -> aiohttp.ClientSession:
    client = gateway.client()
    answer = await sign_in(client, email=email)
    assert answer.status == 303, await answer.text()
    return client


async def verify(gateway: RunningGateway, client: aiohttp.ClientSession) -> None:
    """Mark the client's session as having passed a second-factor check now (as the step-up
    would), and give the client the new session cookie."""
    raw = client.cookie_jar.filter_cookies(gateway.url)[COOKIE].value
    live = await gateway.services.sessions.lookup(raw)
    assert live is not None
    new_raw, _ = await gateway.services.sessions.mark_verified(live, "totp", gateway.clock())
    client.cookie_jar.update_cookies({COOKIE: new_raw}, response_url=gateway.url)


async def to_xero(client: aiohttp.ClientSession) -> URL:
    """Start connecting: the authorize URL the gateway sends the browser to."""
    answer = await client.get("/_gateway/xero/connect", allow_redirects=False)
    assert answer.status == 303, await answer.text()
    return URL(answer.headers["Location"])


async def consent(client: aiohttp.ClientSession, authorize: URL) -> URL:
    """The emulator consents at once; the callback URL it sends the browser back to."""
    async with aiohttp.ClientSession() as browser:
        answer = await browser.get(authorize, allow_redirects=False)
        assert answer.status == 302, await answer.text()
        return URL(answer.headers["Location"])


async def back(client: aiohttp.ClientSession, callback: URL) -> aiohttp.ClientResponse:
    """Follow Xero's redirect to the gateway's callback (as the browser would)."""
    answer = await client.get(callback.path_qs, headers=HTML, allow_redirects=False)
    await answer.read()
    return answer


async def connect(client: aiohttp.ClientSession) -> aiohttp.ClientResponse:
    """The whole flow for a signed-in principal; the callback's answer."""
    return await back(client, await consent(client, await to_xero(client)))
