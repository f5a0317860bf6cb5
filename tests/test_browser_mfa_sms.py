"""Text messages as the primary method, walked in a real headless Chromium as a new user meets
it: the codes arrive at a local stand-in for the SMS API and, for the backup email, at a real
SMTP server."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox, Provider
from tests.test_browser_mfa import (
    FIRST_ASKED,
    _header,
    _mailed_code,
    _save_codes,
    _sign_in,
    _sign_out,
)
from tests.test_mfa_sms import SENDER, _texted
from tests.test_sending import ACCOUNT, API_KEY

pytestmark = pytest.mark.browser

SUBMIT_CODE = 'form[action="/_gateway/mfa/verify"] button[type=submit]'


async def test_a_principal_enrols_by_text_message_then_signs_in_with_a_texted_code(
    make_gateway: GatewayFactory,
    browser: Browser,
    provider: Provider,
    mailbox: Mailbox,
) -> None:
    gateway: RunningGateway = await make_gateway(
        policies=True,
        sms={
            "provider_url": provider.url,
            "account": ACCOUNT,
            "api_key": API_KEY,
            "sender": SENDER,
        },
        email={
            "host": "127.0.0.1",
            "port": mailbox.port,
            "starttls": False,
            "sender": "Sign-in <no-reply@gateway.example>",
        },
    )
    context = await browser.new_context()
    page = await context.new_page()
    backup = "ava.backup@harbour.example"

    # From the prompt: text messages, a mobile number typed the Australian way, its code.
    await _sign_in(page, gateway, "ava@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/prompt" in page.url
    assert "a text message" in (await page.text_content("main") or "")
    await page.click("text=Set up now")
    await page.click("#choose-sms")
    await page.fill("#destination", "0412 345 678")
    await page.click("#send-sms-code")
    await page.wait_for_selector("#sms-sent")
    assert await page.text_content("#sms-number") == "+61 412 345 678"
    await page.fill("#code", _texted(provider, "+61412345678"))
    await page.click("#confirm-sms")

    # A principal must add a backup: an email, proved by a code from a real SMTP server.
    await page.wait_for_selector("#send-backup-code")
    assert await page.locator("#skip-backup").count() == 0
    await page.check("#backup-email")
    await page.fill("#destination", backup)
    await page.click("#send-backup-code")
    await page.wait_for_selector("#backup-sent")
    await page.fill("#code", _mailed_code(mailbox, backup))
    await page.click("#confirm-backup")
    await _save_codes(page)
    await page.click("#continue")
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa") == "verified"
    assert await _header(page, "x-gateway-mfa-method") == "sms"
    await _sign_out(page)

    # Later: the code is texted as the challenge opens, once however often it is reloaded.
    gateway.clock.advance(16 * 60)  # past the per-user send window of the set-up's codes
    texted = len(provider.requests)
    await _sign_in(page, gateway, "ava@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/verify" in page.url
    sent = await page.text_content("#sms-sent") or ""
    assert "We sent a code to +61 ••• ••• 678" in sent
    assert len(provider.requests) == texted + 1
    await page.reload()
    await page.wait_for_selector("#sms-sent")
    assert len(provider.requests) == texted + 1

    # "Send a new code" works until the limit, which says when to try again.
    said = ""
    for _ in range(6):
        await page.click("#send-sms-again")
        await page.wait_for_load_state()
        alert = page.locator("[role=alert]")
        if await alert.count():
            said = await alert.text_content() or ""
            break
    assert "then send again" in said
    # Five codes an hour to one number, the set-up's among them.
    assert len(provider.requests) == texted + 4
    await page.fill("#code", _texted(provider, "+61412345678"))
    await page.check("#remember")
    await page.click(SUBMIT_CODE)
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa-method") == "sms"
    await _sign_out(page)

    # "Don't ask again on this device" still works: no code texted.
    await _sign_in(page, gateway, "ava@harbour.example", FIRST_ASKED)
    await page.wait_for_selector("#identity")
    assert await _header(page, "x-gateway-mfa-method") == "device"
    assert len(provider.requests) == texted + 4
    await context.close()


async def test_the_text_message_pages_fit_a_phone(
    make_gateway: GatewayFactory, browser: Browser, provider: Provider
) -> None:
    gateway: RunningGateway = await make_gateway(
        policies=True,
        sms={
            "provider_url": provider.url,
            "account": ACCOUNT,
            "api_key": API_KEY,
            "sender": SENDER,
        },
    )
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    page = await context.new_page()
    await _sign_in(page, gateway, "max@harbour.example", "/")
    await page.click("text=Set up now")
    await page.click("#choose-sms")
    await page.fill("#destination", "+61 412 345 678")
    await page.click("#send-sms-code")
    await page.wait_for_selector("#confirm-sms")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    button = await page.locator("#confirm-sms").bounding_box()
    assert button is not None
    assert button["width"] > 250
    await context.close()
