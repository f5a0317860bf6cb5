"""Two-factor authentication walked in a real headless Chromium, as a new user meets it: set up
an authenticator app from the prompt, then sign in with a code, a remembered device and a
recovery code."""

from __future__ import annotations

import asyncio
import re
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import pyotp
import pytest
from playwright.async_api import Browser, Page

from gateway.sandbox.demo import DEMO_PASSWORD
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox

pytestmark = pytest.mark.browser

FIRST_ASKED = "/?from=bookmark"
CODE = re.compile(r"\b([0-9]{6,8})\b")


async def _sign_in(page: Page, gateway: RunningGateway, email: str, target: str) -> None:
    await page.goto(f"{gateway.url}{target}")
    assert "/_gateway/login" in page.url
    await page.fill("#email", email)
    await page.fill("#password", DEMO_PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_load_state()


async def _sign_out(page: Page) -> None:
    await page.click("text=Sign out")
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=You have signed out.")


async def _header(page: Page, name: str) -> str | None:
    return await page.text_content(f'[data-header="{name}"]')


async def _enrol(page: Page, gateway: RunningGateway) -> tuple[str, list[str]]:
    """From the prompt to the recovery codes; returns the key read from the page and the codes."""
    key = await _set_up_app(page, gateway)
    return key, await _save_codes(page)


async def _set_up_app(page: Page, gateway: RunningGateway) -> str:
    """From the prompt to a confirmed authenticator app; returns the key read from the page."""
    await page.click("text=Set up now")
    await page.click("#choose-totp")
    await page.wait_for_selector("svg")
    assert "Google Authenticator" in (await page.text_content("main") or "")
    key = (await page.text_content("#totp-key") or "").replace(" ", "")
    link = await page.get_attribute("#totp-link", "href")
    assert link is not None
    assert link.startswith("otpauth://totp/")
    assert f"secret={key}" in link
    await page.fill("#code", pyotp.TOTP(key).at(gateway.clock()))
    await page.click("button[type=submit]")
    await page.wait_for_load_state()
    return key


async def _save_codes(page: Page) -> list[str]:
    """Read, and download, the recovery codes shown at the end of the set-up."""
    await page.wait_for_selector("#recovery-codes")
    codes = [
        (c or "").strip() for c in await page.locator("#recovery-codes code").all_text_contents()
    ]
    assert len(codes) == 10
    download = await page.get_attribute("#download-codes", "href")
    assert download is not None
    assert download.startswith("data:text/plain")
    assert await page.get_attribute("#download-codes", "download") == "recovery-codes.txt"
    async with page.expect_download() as downloading:
        await page.click("#download-codes")
    saved = await downloading.value
    assert saved.suggested_filename == "recovery-codes.txt"
    text = await asyncio.to_thread(Path(await saved.path()).read_text)
    assert text.split() == codes
    return codes


async def test_a_new_user_enrols_then_signs_in_every_way(
    make_gateway: GatewayFactory,
    browser: Browser,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    context = await browser.new_context()
    page = await context.new_page()

    # Sign in, see the prompt, set up the app, save the codes, land where first asked.
    await _sign_in(page, gateway, "max@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/prompt" in page.url
    key, codes = await _enrol(page, gateway)
    await page.click("#continue")
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa") == "verified"
    assert await _header(page, "x-gateway-mfa-method") == "totp"
    assert await _header(page, "x-gateway-mfa-at") == str(int(gateway.clock()))
    await _sign_out(page)

    # Sign in with a code from the app (a later one: the enrolment's code is spent), and
    # ask not to be asked again on this device.
    gateway.clock.advance(30)
    await _sign_in(page, gateway, "max@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/verify" in page.url
    assert "Don't ask again on this device for 23 hours" in (await page.text_content("main") or "")
    await page.fill("#code", pyotp.TOTP(key).at(gateway.clock()))
    await page.check("#remember")
    await page.click("button[type=submit]")
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa-method") == "totp"
    device = [c for c in await context.cookies() if c["name"].endswith("gw-mfa-device")]
    assert len(device) == 1
    assert device[0]["httpOnly"]
    assert device[0]["sameSite"] == "Lax"
    await _sign_out(page)

    # This device is remembered: no code asked.
    await _sign_in(page, gateway, "max@harbour.example", FIRST_ASKED)
    await page.wait_for_selector("#identity")
    assert await _header(page, "x-gateway-mfa-method") == "device"
    await context.close()

    # Elsewhere (a fresh browser), with a recovery code, which then no longer works.
    elsewhere = await browser.new_context()
    page = await elsewhere.new_page()
    await _sign_in(page, gateway, "max@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/verify" in page.url
    await page.click("#use-recovery")
    await page.fill("#code", codes[0].upper())
    await page.click("button[type=submit]")
    await page.wait_for_selector("#identity")
    assert await _header(page, "x-gateway-mfa-method") == "recovery"
    await _sign_out(page)
    await _sign_in(page, gateway, "max@harbour.example", FIRST_ASKED)
    await page.click("#use-recovery")
    await page.fill("#code", codes[0])
    await page.click("button[type=submit]")
    alert = await page.wait_for_selector("[role=alert]")
    assert alert is not None
    assert "not accepted" in (await alert.text_content() or "")
    assert "/_gateway/mfa/verify" in page.url
    await elsewhere.close()


async def test_the_authenticator_page_fits_a_phone(
    make_gateway: GatewayFactory,
    browser: Browser,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    page = await context.new_page()
    await _sign_in(page, gateway, "ava@harbour.example", "/")
    await page.click("text=Set up now")
    await page.click("#choose-totp")
    await page.wait_for_selector("#totp-key")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375
    qr = await page.locator(".qr svg").bounding_box()
    assert qr is not None
    assert 150 <= qr["width"] <= 375
    button = await page.locator("button[type=submit]").bounding_box()
    assert button is not None
    assert button["width"] > 250
    await context.close()


def smtp_section(box: Mailbox) -> dict[str, Any]:
    """The [email] settings that send through ``box``, the SMTP server on loopback."""
    return {
        "host": "127.0.0.1",
        "port": box.port,
        "starttls": False,
        "sender": "Sign-in <no-reply@gateway.example>",
    }


def _mailed_code(box: Mailbox, to: str) -> str:
    """The code in the newest email the SMTP server received, which went to ``to``."""
    mail = message_from_bytes(box.received[-1], policy=default)
    assert mail["To"] == to
    match = CODE.search(mail.get_body().get_content())  # type: ignore[union-attr]
    assert match is not None
    return match.group(1)


async def test_a_principal_adds_a_backup_email_and_signs_in_with_it(
    make_gateway: GatewayFactory,
    browser: Browser,
    mailbox: Mailbox,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    context = await browser.new_context()
    page = await context.new_page()
    backup = "ava.backup@harbour.example"

    # The app first; then a principal must add a backup, proved by a code emailed to it.
    await _sign_in(page, gateway, "ava@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/prompt" in page.url
    await _set_up_app(page, gateway)
    await page.wait_for_selector("#send-backup-code")
    assert await page.locator("#skip-backup").count() == 0
    assert "Your role needs one" in (await page.text_content("main") or "")
    await page.check("#backup-email")
    await page.fill("#destination", backup)
    await page.click("#send-backup-code")
    sent = await page.wait_for_selector("#backup-sent")
    assert sent is not None
    assert "a•••@harbour.example" in (await sent.text_content() or "")
    await page.fill("#code", _mailed_code(mailbox, backup))
    await page.click("#confirm-backup")
    await _save_codes(page)
    await page.click("#continue")
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa") == "verified"
    await _sign_out(page)

    # Later: "use my backup method" sends a code to the email, which signs in.
    await _sign_in(page, gateway, "ava@harbour.example", FIRST_ASKED)
    assert "/_gateway/mfa/verify" in page.url
    await page.click("#use-backup")
    await page.click("#send-backup-code")
    await page.wait_for_selector("#backup-sent")
    await page.fill("#code", _mailed_code(mailbox, backup))
    await page.click('form[action="/_gateway/mfa/verify"] button[type=submit]')
    await page.wait_for_selector("#identity")
    assert page.url == f"{gateway.url}{FIRST_ASKED}"
    assert await _header(page, "x-gateway-mfa-method") == "email"
    await context.close()
