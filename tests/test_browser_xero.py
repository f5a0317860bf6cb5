"""Connecting Xero in a real browser: headless Chromium, the gateway and the Xero emulator on
loopback. A verified principal connects the AU tenant, the policy then applies to a member,
and disconnecting removes the connection at Xero."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, BrowserContext, Page

from gateway.sandbox.demo import DEMO_PASSWORD
from gateway.sandbox.xero_emulator import AU_TENANT, XeroEmulator
from tests.conftest import GatewayFactory, RunningGateway
from tests.xero_flow import COOKIE, xero_gateway

pytestmark = pytest.mark.browser

PHONE_WIDTH = 375


async def _sign_in(page: Page, gateway: RunningGateway, email: str) -> None:
    await page.goto(f"{gateway.url}/")
    assert "/_gateway/login" in page.url
    await page.fill("#email", email)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def _verify(context: BrowserContext, gateway: RunningGateway) -> None:
    """The session passes its second-factor check (as the step-up would): the store marks it
    and the browser gets the new session cookie."""
    [cookie] = [c for c in await context.cookies() if c.get("name") == COOKIE]
    live = await gateway.services.sessions.lookup(cookie.get("value", ""))
    assert live is not None
    new_raw, _ = await gateway.services.sessions.mark_verified(live, "totp", gateway.clock())
    await context.add_cookies([{"name": COOKIE, "value": new_raw, "url": str(gateway.url)}])


async def test_a_principal_connects_xero_and_the_policy_then_applies(
    make_gateway: GatewayFactory, xero: XeroEmulator, browser: Browser
) -> None:
    xero.state.consent_tenants = (AU_TENANT.tenant_id,)
    gateway = await xero_gateway(make_gateway, xero)
    context = await browser.new_context(viewport={"width": PHONE_WIDTH, "height": 740})
    page = await context.new_page()
    await _sign_in(page, gateway, "ava@harbour.example")
    await _verify(context, gateway)
    await page.goto(f"{gateway.url}/_gateway/xero")
    assert await page.locator("#no-connections").count() == 1
    await page.click("#connect-xero")  # to Xero (the emulator consents) and back
    await page.wait_for_selector(f'section[data-tenant="{AU_TENANT.tenant_id}"]')
    assert page.url == f"{gateway.url}/_gateway/xero"
    section = page.locator(f'section[data-tenant="{AU_TENANT.tenant_id}"]')
    assert (await section.locator(".country").text_content() or "").strip() == "AU"
    assert (await section.locator(".status").text_content() or "").strip() == "active"
    assert AU_TENANT.name in (await section.text_content() or "")
    assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE_WIDTH
    assert (await page.locator("#connect-xero").text_content() or "").strip() == "Reconnect"

    member_context = await browser.new_context()
    member = await member_context.new_page()
    await _sign_in(member, gateway, "max@harbour.example")
    assert "/_gateway/mfa/prompt" in member.url  # in scope now: the prompt shows
    await member_context.close()

    await section.locator("button", has_text="Disconnect").click()
    await page.wait_for_selector('section[data-status="disconnected"]')
    assert xero.state.grants.connections == {}
    assert await page.locator("#connect-xero").text_content() == "Connect Xero"
    await context.close()
