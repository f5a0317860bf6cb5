"""Gateway admins edit the shipped policy in the console, in a real headless Chromium: the
change reaches a user's very next request, and two admins cannot overwrite each other."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser, Page

from gateway.mfa.totp import code_at
from tests.conftest import GatewayFactory, RunningGateway
from tests.test_admin_console import EMAIL, PASSWORD, add
from tests.test_admin_policy_pages import PAST_DEADLINE, SHIPPED_DEADLINE, line_of
from tests.test_browser import sign_in_on_page

pytestmark = pytest.mark.browser


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


async def admin_page(gateway: RunningGateway, browser: Browser, email: str = EMAIL) -> Page:
    """A tablet-sized browser of its own, signed in to the console as a new admin."""
    seed = await add(gateway, email)
    context = await browser.new_context(viewport={"width": 768, "height": 1024})
    page = await context.new_page()
    await page.goto(f"{gateway.url}/_gateway/admin/")
    await page.fill("#email", email)
    await page.fill("#password", PASSWORD)
    await page.fill("#code", code_at(seed, gateway.clock()))
    await page.click("button[type=submit]")
    await page.wait_for_selector("#admin-identity")
    return page


async def open_editor(page: Page) -> str:
    """From the console's front page to the shipped policy's editor; the TOML it shows."""
    await page.click("nav >> text=Policies")
    await page.click("a:text-is('au-ato-2fa')")
    await page.wait_for_selector("#policy")
    await page.click("a:text-is('Edit')")
    return await page.input_value("#toml")


async def test_an_admin_moves_the_deadline_and_a_prompted_user_is_blocked_next_request(
    gateway: RunningGateway, browser: Browser
) -> None:
    user = await (await browser.new_context()).new_page()
    await user.goto(f"{gateway.url}/reports")
    await sign_in_on_page(user, "max@harbour.example")
    await user.wait_for_selector("text=Set up two-factor authentication")
    await user.click("text=Remind me later")
    await user.wait_for_load_state()
    assert user.url == f"{gateway.url}/reports"  # only prompted: through to the app

    admin = await admin_page(gateway, browser)
    text = await open_editor(admin)
    assert SHIPPED_DEADLINE in text
    edited = text.replace(SHIPPED_DEADLINE, PAST_DEADLINE)
    await admin.fill("#toml", edited)
    await admin.click("button:text-is('Preview')")
    line = admin.locator(f'[data-line="{line_of(edited, "deadline =")}"]')
    assert "has passed" in (await line.locator(".note.warning").text_content() or "")
    change = admin.locator('tr[data-path="schedule.deadline"]')
    assert "2026-12-20T23:59:59.999999+11:00" in (await change.text_content() or "")
    assert await admin.input_value("#toml") == edited  # the text stays as typed
    await admin.click("button:text-is('Save')")
    notice = await admin.wait_for_selector("[role=status]")
    assert notice is not None
    assert "Saved." in (await notice.text_content() or "")
    assert "(passed" in (await admin.text_content("dl.decides") or "")

    await user.goto(f"{gateway.url}/reports")
    await user.wait_for_load_state()
    assert "/_gateway/mfa/blocked" in user.url
    alert = await user.wait_for_selector("[role=alert]")
    assert alert is not None
    assert "has passed" in (await alert.text_content() or "")


async def test_two_admins_edit_at_once_and_the_second_is_told(
    gateway: RunningGateway, browser: Browser
) -> None:
    first = await admin_page(gateway, browser)
    second = await admin_page(gateway, browser, "rhea@gw.example")
    first_text, second_text = await open_editor(first), await open_editor(second)
    await first.fill("#toml", first_text.replace('"23h"', '"12h"'))
    await second.fill("#toml", second_text.replace(SHIPPED_DEADLINE, PAST_DEADLINE))

    await first.click("button:text-is('Save')")
    await first.wait_for_selector("text=Saved.")
    await second.click("button:text-is('Save')")
    stale = await second.wait_for_selector("#stale")
    assert stale is not None
    told = await stale.text_content() or ""
    assert "changed since you opened it" in told
    assert EMAIL in told
    assert "nothing of theirs was overwritten" in told
    theirs = second.locator('#stale tr[data-path="windows.remember_device"]')
    assert '"12h"' in (await theirs.text_content() or "")
    stored = await gateway.services.store.policies.get("au-ato-2fa")
    assert stored.version == 2
    assert stored.document["windows"]["remember_device"] == "12h"
    assert stored.document["schedule"]["deadline"].startswith("2026-12-31")

    # The second admin opens the current version and makes their change again: both stand.
    await second.click("text=open the current version")
    current = await second.input_value("#toml")
    assert 'remember_device = "12h"' in current
    await second.fill("#toml", current.replace(SHIPPED_DEADLINE, PAST_DEADLINE))
    await second.click("button:text-is('Save')")
    await second.wait_for_selector("text=Saved.")
    stored = await gateway.services.store.policies.get("au-ato-2fa")
    assert stored.version == 3
    assert stored.document["windows"]["remember_device"] == "12h"
    assert stored.document["schedule"]["deadline"].startswith("2026-12-20")
