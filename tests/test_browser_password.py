"""A forgotten password walked in a real headless Chromium, as a user meets it: "Forgot
password?", the link from the email (read from a real SMTP server), a new password; the old
sessions are over, and signing in with the new password still asks for the second factor."""

from __future__ import annotations

import pyotp
import pytest
from playwright.async_api import Browser

from tests.conftest import GatewayFactory
from tests.stand_ins import Mailbox
from tests.test_browser_mfa import _header, _save_codes, _set_up_app, _sign_in, smtp_section
from tests.test_password_reset import NEW_PASSWORD, _link

pytestmark = pytest.mark.browser

MAX = "max@harbour.example"
TARGET = "/?from=bookmark"


async def test_a_forgotten_password_is_reset_and_the_second_factor_still_asked(
    make_gateway: GatewayFactory, browser: Browser, mailbox: Mailbox
) -> None:
    gateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    # Max enrols an authenticator app, in the browser they usually use.
    usual = await browser.new_context()
    old = await usual.new_page()
    await _sign_in(old, gateway, MAX, TARGET)
    key = await _set_up_app(old, gateway)
    await old.click("#skip-backup")  # offered, not required, to a member
    await _save_codes(old)
    await old.click("#continue")
    await old.wait_for_selector("#identity")

    # On another device: "Forgot password?" from the sign-in page.
    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{gateway.url}{TARGET}")
    await page.click("#forgot")
    await page.fill("#email", MAX)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#forgot-sent")
    await gateway.services.sending.settle()

    # The link from the email: the token leaves the address bar at once.
    await page.goto(str(_link(mailbox, MAX)))
    assert page.url == f"{gateway.url}/_gateway/password/reset"
    await page.fill("#password", NEW_PASSWORD)
    await page.fill("#confirm", NEW_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=Your password was changed. Sign in with your new password.")
    assert "/_gateway/login" in page.url

    # The session in the usual browser is over.
    await old.goto(f"{gateway.url}{TARGET}")
    assert "/_gateway/login" in old.url

    # Signing in with the new password still asks for the second factor.
    gateway.clock.advance(30)
    await page.fill("#email", MAX)
    await page.fill("#password", NEW_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    assert "/_gateway/mfa/verify" in page.url
    await page.fill("#code", pyotp.TOTP(key).at(gateway.clock()))
    await page.click("button[type=submit]")
    await page.wait_for_selector("#identity")
    assert await _header(page, "x-gateway-mfa") == "verified"
    await context.close()
    await usual.close()
