"""The sign-in pages in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from gateway.sandbox.demo import DEMO_PASSWORD
from tests.conftest import GatewayFactory, RunningGateway

pytestmark = pytest.mark.browser


async def test_user_signs_in_sees_the_app_and_signs_out(
    gateway: RunningGateway, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/?from=bookmark")
    assert page.url.startswith(str(gateway.url / "_gateway/login"))
    await page.fill("#email", "max@harbour.example")
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}/?from=bookmark"
    assert await page.text_content("h1") == "Hello, max@harbour.example"
    assert await page.text_content('[data-header="x-gateway-role"]') == "member"

    await page.click("text=Sign out")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=You have signed out.")
    await page.goto(str(gateway.url / "api/whoami"))
    assert page.url.startswith(str(gateway.url / "_gateway/login"))


async def test_wrong_password_shows_one_generic_message(
    gateway: RunningGateway, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(str(gateway.url / "_gateway/login"))
    await page.fill("#email", "max@harbour.example")
    await page.fill("#password", "not the password at all")
    await page.click("button[type=submit]")
    alert = await page.wait_for_selector("[role=alert]")
    assert alert is not None
    assert await alert.text_content() == "That email and password do not match an account."
    assert await page.input_value("#email") == "max@harbour.example"


async def test_sign_in_page_fits_a_phone_screen(gateway: RunningGateway, browser: Browser) -> None:
    context = await browser.new_context(viewport={"width": 360, "height": 740})
    page = await context.new_page()
    await page.goto(str(gateway.url / "_gateway/login"))
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 360
    box = await page.locator("button[type=submit]").bounding_box()
    assert box is not None
    assert box["width"] > 250
    await context.close()


async def sign_in_on_page(page: Page, email: str) -> None:
    await page.fill("#email", email)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")


async def test_the_sample_apps_heading_fits_a_phone_screen(
    gateway: RunningGateway, browser: Browser
) -> None:
    context = await browser.new_context(viewport={"width": 320, "height": 640})
    page = await context.new_page()
    await page.goto(f"{gateway.url}/")
    await sign_in_on_page(page, "max@harbour.example")
    await page.wait_for_selector("#identity")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 320
    heading = await page.locator("h1").bounding_box()
    assert heading is not None
    assert heading["x"] + heading["width"] <= 320
    await context.close()


async def test_prompted_user_dismisses_the_reminder_and_reaches_the_app(
    make_gateway: GatewayFactory, browser: Browser
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/reports")
    await sign_in_on_page(page, "max@harbour.example")
    await page.wait_for_selector("text=Set up two-factor authentication")
    assert "/_gateway/mfa/prompt" in page.url
    assert "9 days left" in (await page.text_content("[role=status]") or "")
    await page.click("text=Remind me later")
    await page.wait_for_load_state()
    assert page.url == f"{gateway.url}/reports"  # the app's own 404 page: we got through


async def test_blocked_user_sees_why_after_the_deadline(
    make_gateway: GatewayFactory, browser: Browser
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    gateway.clock.set(1_798_722_000.0)  # 1 January 2027, 00:00 in Sydney
    page = await browser.new_page()
    await page.goto(f"{gateway.url}/")
    await page.fill("#email", "ava@harbour.example")
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    alert = await page.wait_for_selector("[role=alert]")
    assert alert is not None
    assert "has passed" in (await alert.text_content() or "")
    assert "/_gateway/mfa/blocked" in page.url
    await page.click("text=Set up now")
    await page.wait_for_selector("#choose-totp")
