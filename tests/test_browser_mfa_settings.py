"""A user changes their backup phone on the 2FA settings page, walked in a real headless
Chromium at phone width: the page asks for a fresh second factor first and comes back, the
confirmation code reaches the SMS stand-in, and the email telling them of the change reaches a
real SMTP server (aiosmtpd), with no secret in it."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from urllib.parse import unquote

import pyotp
import pytest
from playwright.async_api import Browser

from gateway.audit import MfaBackupChanged
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox, Provider
from tests.test_browser_mfa import FIRST_ASKED, _save_codes, _set_up_app, _sign_in, smtp_section
from tests.test_mfa_backup_sms import sms_section
from tests.test_mfa_sms import _texted

pytestmark = pytest.mark.browser

AVA = "ava@harbour.example"
SETTINGS = "/_gateway/mfa/settings"
SUBMIT_CODE = 'form[action="/_gateway/mfa/verify"] button[type=submit]'


async def test_a_user_changes_their_backup_phone_after_a_step_up(
    make_gateway: GatewayFactory, browser: Browser, mailbox: Mailbox, provider: Provider
) -> None:
    gateway: RunningGateway = await make_gateway(
        policies=True, email=smtp_section(mailbox), sms=sms_section(provider)
    )
    ava = await gateway.services.store.users.find_by_email(AVA)
    assert ava is not None
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    page = await context.new_page()

    # Ava sets up an app and, as a principal must, a backup phone.
    await _sign_in(page, gateway, AVA, FIRST_ASKED)
    key = await _set_up_app(page, gateway)
    await page.check("#backup-sms")
    await page.fill("#destination", "0412 345 678")
    await page.click("#send-backup-code")
    await page.wait_for_selector("#backup-sent")
    await page.fill("#code", _texted(provider, "+61412345678"))
    await page.click("#confirm-backup")
    await _save_codes(page)
    await page.click("#continue")
    await page.wait_for_selector("#identity")

    # Ten minutes on, her settings: the methods, her sign-in, and the way to change them.
    gateway.clock.advance(600)
    await page.goto(f"{gateway.url}{SETTINGS}")
    assert await page.text_content("#primary-method") == "an authenticator app"
    assert "678" in (await page.text_content("#backup-method") or "")
    assert "password and authenticator app" in (await page.text_content("#sign-ins") or "")
    assert "(this session)" in (await page.text_content("#sign-ins") or "")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375

    # Changing the backup asks for her second factor first, then comes back to the form.
    await page.click("#change-backup")
    await page.wait_for_selector("#code")
    assert "/_gateway/mfa/verify" in page.url
    assert unquote(page.url).endswith(f"next={SETTINGS}?change=backup&max_age=300")
    await page.fill("#code", pyotp.TOTP(key).at(gateway.clock()))
    await page.click(SUBMIT_CODE)
    await page.wait_for_selector("#change-backup-form")
    assert unquote(page.url).endswith(f"{SETTINGS}?change=backup")

    # The new number gets a code; until it is confirmed, the old backup stays.
    texts_before = len(provider.requests)
    await page.check("#backup-sms")
    await page.fill("#destination", "0412 999 888")
    await page.click("#send-backup-code")
    await page.wait_for_selector("#backup-sent")
    assert len(provider.requests) == texts_before + 1
    assert "678" in (await page.text_content("#backup-method") or "")
    mails_before = len(mailbox.received)
    await page.fill("#code", _texted(provider, "+61412999888"))
    await page.click("#confirm-backup")
    await page.wait_for_selector("#settings-done")
    assert "888" in (await page.text_content("#backup-method") or "")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 375

    # She is emailed about it, with the number masked and no code in it.
    await gateway.services.sending.settle()
    assert len(mailbox.received) == mails_before + 1
    mail = message_from_bytes(mailbox.received[-1], policy=default)
    assert mail["To"] == AVA
    assert mail["Subject"] == "Your two-factor authentication settings changed"
    text = mail.get_body().get_content()  # type: ignore[union-attr]
    assert "Your backup method is now the phone number" in text
    assert "412 999" not in text
    assert "412999" not in text
    [event] = await gateway.services.store.audit.list(kind=MfaBackupChanged.kind)
    assert (event.subject, event.detail["method"], event.detail["previous"]) == (
        ava.id,
        "sms",
        "sms",
    )
    await context.close()
