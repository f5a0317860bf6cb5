"""A member loses their phone, walked in real headless Chromium: their principal opens the team
page, confirms their own second factor again, resets the member's 2FA; the member is emailed
(aiosmtpd receives it), their session ends, and at their next sign-in they must set 2FA up
again."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default
from urllib.parse import unquote

import pyotp
import pytest
from playwright.async_api import Browser

from gateway.audit import MfaReset
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox
from tests.test_browser_mfa import (
    FIRST_ASKED,
    _header,
    _mailed_code,
    _save_codes,
    _set_up_app,
    _sign_in,
    smtp_section,
)

pytestmark = pytest.mark.browser

MAX, AVA = "max@harbour.example", "ava@harbour.example"
TEAM = "/_gateway/mfa/team"


async def test_a_principal_resets_a_member_who_lost_their_phone(
    make_gateway: GatewayFactory, browser: Browser, mailbox: Mailbox
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    max_user = await gateway.services.store.users.find_by_email(MAX)
    assert max_user is not None

    # The member sets up an app (skipping the backup), on a phone width.
    member_context = await browser.new_context(viewport={"width": 375, "height": 740})
    member = await member_context.new_page()
    await _sign_in(member, gateway, MAX, FIRST_ASKED)
    await _set_up_app(member, gateway)
    await member.click("#skip-backup")
    await _save_codes(member)
    await member.click("#continue")
    await member.wait_for_selector("#identity")
    assert await _header(member, "x-gateway-mfa") == "verified"

    # The principal sets up an app and a backup email.
    principal_context = await browser.new_context(viewport={"width": 375, "height": 740})
    principal = await principal_context.new_page()
    await _sign_in(principal, gateway, AVA, FIRST_ASKED)
    key = await _set_up_app(principal, gateway)
    await principal.check("#backup-email")
    await principal.fill("#destination", "ava.backup@harbour.example")
    await principal.click("#send-backup-code")
    await principal.wait_for_selector("#backup-sent")
    await principal.fill("#code", _mailed_code(mailbox, "ava.backup@harbour.example"))
    await principal.click("#confirm-backup")
    await _save_codes(principal)
    await principal.click("#continue")
    await principal.wait_for_selector("#identity")

    # The member loses their phone. Later, the principal opens the team page.
    gateway.clock.advance(600)
    await principal.goto(f"{gateway.url}{TEAM}")
    row = principal.locator(f"#member-{max_user.id}")
    assert "2FA set up: authenticator app" in await row.inner_text()
    assert "Last sign-in:" in await row.inner_text()
    assert "31 Dec 2026 23:59 AEDT" in await row.inner_text()  # in the policy's zone
    assert await principal.locator(f"#member-{max_user.id} a.button").count() == 1
    # No page wider than the phone: nothing to scroll sideways.
    width = await principal.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    await principal.click(f"#reset-{max_user.id}")
    await principal.wait_for_selector("#confirm-reset")
    await principal.click("#confirm-reset-button")

    # The principal's check is ten minutes old: the verify page asks again, then comes back.
    await principal.wait_for_selector("#code")
    assert "/_gateway/mfa/verify" in principal.url
    assert "max_age=300" in principal.url
    assert unquote(principal.url).endswith(f"next={TEAM}?reset={max_user.id}&max_age=300")
    assert await gateway.services.store.factors.kinds(max_user.id) == [("totp", "primary")]
    await principal.fill("#code", pyotp.TOTP(key).at(gateway.clock()))
    await principal.click('form[action="/_gateway/mfa/verify"] button[type=submit]')
    await principal.wait_for_selector("#confirm-reset")
    sent_before = len(mailbox.received)
    await principal.click("#confirm-reset-button")
    done = await principal.wait_for_selector("#reset-done")
    assert done is not None
    assert "We have emailed them" in (await done.text_content() or "")
    assert "2FA not set up" in await row.inner_text()

    # The member is emailed, no secret in it.
    assert len(mailbox.received) == sent_before + 1
    mail = message_from_bytes(mailbox.received[-1], policy=default)
    assert mail["To"] == MAX
    assert mail["Subject"] == "Your two-factor authentication was reset"
    text = mail.get_body().get_content()  # type: ignore[union-attr]
    assert "signed out everywhere" in text

    # The member's session is over: the next page is the sign-in page; after it, set-up.
    await member.goto(f"{gateway.url}{FIRST_ASKED}")
    assert "/_gateway/login" in member.url
    await member.fill("#email", MAX)
    await member.fill("#password", "demo-password-2026")
    await member.click("button[type=submit]")
    await member.wait_for_load_state()
    assert "/_gateway/mfa/prompt" in member.url
    assert await member.locator("text=Set up now").count() == 1

    [event] = await gateway.services.store.audit.list(kind=MfaReset.kind)
    assert event.subject == max_user.id
    assert event.detail["via"] == "team"
    assert event.detail["checked_by"] == "totp"
    await member_context.close()
    await principal_context.close()
