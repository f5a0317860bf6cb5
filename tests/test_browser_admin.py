"""A gateway admin, added with the CLI, signs in to the console in a real headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.async_api import Browser

from gateway.mfa.totp import code_at
from tests.conftest import SECRET, GatewayFactory, RunningGateway
from tests.test_admin_console import seed_of
from tests.test_cli import run

pytestmark = pytest.mark.browser

PASSWORD = "a long admin passphrase"


def cli_config(tmp_path: Path) -> Path:
    """A config file for the CLI naming the running gateway's database and secret key."""
    path = tmp_path / "cli.toml"
    database = tmp_path / "gateway.sqlite3"
    path.write_text(
        f'[upstream]\nurl = "http://127.0.0.1:9"\n[store]\npath = "{database}"\n'
        f'[security]\nsecret_key = "{SECRET}"\ncookie_secure = false\n'
    )
    return path


async def test_an_admin_added_by_the_cli_signs_in_with_totp_and_out(
    make_gateway: GatewayFactory, browser: Browser, tmp_path: Path
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    added = run(
        cli_config(tmp_path), "admin", "add", "olive@gw.example", "--name", "Olive Ops",
        stdin=PASSWORD + "\n",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    uri = re.search(r"otpauth://\S+", added.stdout)
    assert uri is not None
    seed = seed_of(uri[0])
    assert seed.replace(" ", "") in re.sub(r"\s", "", added.stdout.split("key:")[1])

    page = await browser.new_page()
    await page.goto(str(gateway.url / "_gateway/admin"))
    assert page.url == str(gateway.url / "_gateway/admin/")
    await page.fill("#email", "olive@gw.example")
    await page.fill("#password", PASSWORD)
    await page.fill("#code", code_at(seed, gateway.clock()))
    await page.click("button[type=submit]")
    await page.wait_for_selector("#admin-identity")
    assert "Olive Ops" in (await page.text_content("#admin-identity") or "")
    policy = page.locator('[data-policy="au-ato-2fa"]')
    in_scope = await policy.locator('[data-field="in_scope"]').text_content()
    assert in_scope is not None
    assert int(in_scope) > 0

    await page.click("text=Sign out")
    await page.wait_for_selector("text=You have signed out.")
    await page.goto(str(gateway.url / "_gateway/admin/"))
    assert await page.locator("#admin-identity").count() == 0

    # The same code again is refused, with the one message.
    await page.fill("#email", "olive@gw.example")
    await page.fill("#password", PASSWORD)
    await page.fill("#code", code_at(seed, gateway.clock()))
    await page.click("button[type=submit]")
    alert = await page.wait_for_selector("[role=alert]")
    assert alert is not None
    assert "do not match an admin account" in (await alert.text_content() or "")
