"""An admin's walk through the console in a real headless Chromium: sign in with password and
TOTP, the dashboard's chart, a search for a principal, Explain, a support reset with who
checked their identity, and the reset found in the audit page and its CSV export."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from playwright.async_api import Browser

from gateway.audit import MfaReset
from gateway.mfa.totp import code_at
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox
from tests.test_admin_console import EMAIL, PASSWORD, add
from tests.test_browser_mfa import smtp_section
from tests.test_user_api_backup import _enrolled_with_a_backup_email

pytestmark = pytest.mark.browser

AVA = "ava@harbour.example"
VERIFIED_BY = "Sam Lee: video call, photo ID matched"
REASON = "lost phone and backup email account"


async def test_an_admin_finds_a_principal_explains_resets_and_audits(
    make_gateway: GatewayFactory, browser: Browser, mailbox: Mailbox, tmp_path: Path
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    async with gateway.client() as ava:
        await _enrolled_with_a_backup_email(ava, gateway, mailbox)
    ava_user = await gateway.services.store.users.find_by_email(AVA)
    assert ava_user is not None
    assert await gateway.services.store.factors.kinds(ava_user.id) != []
    seed = await add(gateway)

    context = await browser.new_context(accept_downloads=True)
    page = await context.new_page()
    await page.goto(str(gateway.url / "_gateway/admin/"))
    await page.fill("#email", EMAIL)
    await page.fill("#password", PASSWORD)
    await page.fill("#code", code_at(seed, gateway.clock()))
    await page.click("button[type=submit]")
    await page.wait_for_selector("#admin-identity")

    # The dashboard: the AU policy's numbers and its chart, drawn and labelled.
    policy = page.locator('[data-policy="au-ato-2fa"]')
    assert await policy.locator('[data-field="in_scope"]').text_content() == "2"
    assert await policy.locator('[data-field="enrolled"]').text_content() == "1"
    chart = policy.locator("svg.chart")
    assert await chart.is_visible()
    box = await chart.bounding_box()
    assert box is not None
    assert box["width"] > 200
    assert await chart.get_attribute("role") == "img"
    assert await chart.locator("polyline").count() == 1

    # Search for the principal, open her page, then Explain.
    await page.click("nav >> text=Users")
    await page.fill("#q", "ava@")
    await page.click("button:has-text('Search')")
    await page.click(f'[data-user="{AVA}"] a')
    await page.wait_for_selector("#mfa-state")
    assert "yes" in (await page.text_content('[data-field="enrolled"]') or "")
    await page.click("#explain")
    why = page.locator('[data-policy="au-ato-2fa"] [data-field="why"]')
    assert "active tenant in AU" in (await why.text_content() or "")
    assert await page.locator('[data-field="outcome"]').text_content() == "verify"
    await page.go_back()

    # A support reset, with who checked her identity and why.
    await page.fill("#verified_by", VERIFIED_BY)
    await page.fill("#reason", REASON)
    await page.click("#support-reset button[type=submit]")
    notice = await page.wait_for_selector("#reset-done")
    assert notice is not None
    assert "emailed" in (await notice.text_content() or "")
    assert await gateway.services.store.factors.kinds(ava_user.id) == []
    assert "no" in (await page.text_content('[data-field="enrolled"]') or "")

    # The audit page finds it, and its CSV export holds it.
    await page.click("nav >> text=Audit")
    await page.fill("#kind", MfaReset.kind)
    await page.fill("#subject", AVA)
    await page.click("#audit-filters button[type=submit]")
    row = page.locator(f'tr[data-kind="{MfaReset.kind}"]')
    assert await row.count() == 1
    text = await row.text_content() or ""
    assert VERIFIED_BY in text
    assert "support-console" in text
    assert EMAIL in text
    async with page.expect_download() as waiting:
        await page.click("#export-csv")
    download = await waiting.value
    saved = tmp_path / "audit.csv"
    await download.save_as(saved)
    rows = list(csv.DictReader(io.StringIO(saved.read_text(encoding="utf-8"))))
    assert [r["kind"] for r in rows] == [MfaReset.kind]
    detail = json.loads(rows[0]["detail"])
    assert (detail["verified_by"], detail["reason"]) == (VERIFIED_BY, REASON)
    assert rows[0]["subject"] == ava_user.id
    await context.close()
