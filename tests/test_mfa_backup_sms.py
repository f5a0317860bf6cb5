"""A backup phone over HTTP against a real gateway whose SMS driver talks to a local stand-in
for the Twilio-compatible API: the request the gateway makes, a failed send that spends
nothing, and "use my backup method" by text message at sign-in."""

from __future__ import annotations

import html
from typing import Any

import pytest

from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in
from tests.stand_ins import Provider
from tests.test_mfa_pages import HTML, _csrf, _to_backup_step
from tests.test_sending import ACCOUNT, API_KEY, CODE

SENDER = "+61400000000"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, provider: Provider) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True, sms=sms_section(provider))
    return running


def sms_section(provider: Provider) -> dict[str, Any]:
    """The [sms] settings that send through ``provider``, the SMS API's stand-in."""
    return {
        "provider_url": provider.url,
        "account": ACCOUNT,
        "api_key": API_KEY,
        "sender": SENDER,
    }


def _texted_code(fake: Provider, to: str) -> str:
    path, _, form = fake.requests[-1]
    assert path.endswith(f"/Accounts/{ACCOUNT}/Messages.json")
    assert (form["To"], form["From"]) == (to, SENDER)
    match = CODE.search(form["Body"])
    assert match
    return match.group(1)


async def test_a_backup_phone_by_sms_then_use_my_backup_method(
    gateway: RunningGateway,
    provider: Provider,
) -> None:
    store = gateway.services.store
    async with gateway.client() as ava:
        await sign_in(ava, email="ava@harbour.example")
        csrf = await _to_backup_step(ava, gateway)
        step = {"csrf": csrf, "next": "/", "kind": "sms", "destination": "0412 345 678"}
        # The carrier refuses: the page says to try again, and nothing is spent.
        provider.status = 500
        failed = await ava.post("/_gateway/mfa/enrol/backup", data=step)
        assert failed.status == 503
        assert "Try again" in html.unescape(await failed.text())
        provider.status = 201
        sent = await ava.post("/_gateway/mfa/enrol/backup", data=step)
        assert sent.status == 200
        assert "+61 ••• ••• 678" in html.unescape(await sent.text())
        code = _texted_code(provider, "+61412345678")
        done = await ava.post(
            "/_gateway/mfa/enrol/backup/confirm", data={**step, "code": code}, headers=HTML
        )
        assert done.status == 200
        assert 'id="recovery-codes"' in await done.text()
        user = await store.users.find_by_email("ava@harbour.example")
        assert user is not None
        assert sorted(await store.factors.kinds(user.id)) == [
            ("sms", "backup"),
            ("totp", "primary"),
        ]
        rows = await store.db.fetch_all("SELECT secret FROM mfa_factors")
        assert all("412345678" not in row["secret"] for row in rows)
        await ava.post("/_gateway/logout", data={"csrf": await _csrf(ava, "/_gateway/logout")})

        await sign_in(ava, email="ava@harbour.example")
        page = await ava.get("/_gateway/mfa/verify?method=backup", headers=HTML)
        text = html.unescape(await page.text())
        assert "Send a code to +61 ••• ••• 678" in text
        csrf_match = CSRF_FIELD.search(text)
        assert csrf_match
        csrf = csrf_match.group(1)
        await ava.post("/_gateway/mfa/verify/send", data={"csrf": csrf, "next": "/"})
        verified = await ava.post(
            "/_gateway/mfa/verify",
            data={
                "csrf": csrf,
                "method": "backup",
                "code": _texted_code(provider, "+61412345678"),
                "next": "/",
            },
            allow_redirects=False,
        )
        assert verified.status == 303
        body = await (await ava.get("/api/whoami")).json()
        assert body["headers"]["X-Gateway-Mfa-Method"] == "sms"
