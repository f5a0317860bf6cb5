"""The 2FA settings page as a browser posts it, against a real gateway on loopback: who may look
(signed in, second factor passed), who may change (a second factor in the last five minutes,
or the verify page first, coming back here), forged forms, another user's device, a user
without 2FA, and a new authenticator app put in place of the old one."""

from __future__ import annotations

import re
from urllib.parse import unquote

import aiohttp
import pyotp
import pytest

from gateway.audit import MfaPrimaryChanged, RecoveryCodesRegenerated
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in
from tests.stand_ins import Mailbox
from tests.test_browser_mfa import smtp_section
from tests.test_user_api import API, _csrf, _enrol, _sign_in

SETTINGS = "/_gateway/mfa/settings"
MAX, AVA = "max@harbour.example", "ava@harbour.example"
KEY = re.compile(r'id="totp-key">([A-Z2-7 ]+)<')


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, mailbox: Mailbox) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    return running


async def _page(client: aiohttp.ClientSession, path: str = SETTINGS) -> tuple[int, str, str]:
    """Status, Location (for a redirect) and the body of a GET."""
    response = await client.get(path, allow_redirects=False)
    assert response.status != 500
    return response.status, unquote(response.headers.get("Location", "")), await response.text()


async def _post(
    client: aiohttp.ClientSession, path: str, csrf: str, **fields: str
) -> tuple[int, str, str]:
    response = await client.post(path, data={"csrf": csrf, **fields}, allow_redirects=False)
    assert response.status != 500
    return response.status, unquote(response.headers.get("Location", "")), await response.text()


async def _enrolled(gateway: RunningGateway, client: aiohttp.ClientSession) -> pyotp.TOTP:
    totp, _ = await _enrol(client, gateway, (await _sign_in(client, MAX))["csrf_token"])
    return totp


def _csrf_of(body: str) -> str:
    match = CSRF_FIELD.search(body)
    assert match is not None
    return match.group(1)


async def test_looking_needs_a_session_that_passed_its_second_factor(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        status, location, _ = await _page(client)
        assert (status, location) == (303, f"/_gateway/login?next={SETTINGS}")
        await _enrolled(gateway, client)
        status, _, body = await _page(client)
        assert status == 200
        assert 'id="primary-method">an authenticator app<' in body
        assert 'action="/_gateway/mfa/settings/recovery-codes"' in body
    async with gateway.client() as client:
        await sign_in(client, MAX)  # the password only: the second factor is still to come
        status, location, _ = await _page(client)
        assert (status, location) == (303, f"/_gateway/mfa/verify?next={SETTINGS}")


async def test_changes_ask_for_a_fresh_second_factor_and_refuse_forged_forms(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        totp = await _enrolled(gateway, client)
        csrf = _csrf_of((await _page(client))[2])
        gateway.clock.advance(301)
        status, location, _ = await _post(client, f"{SETTINGS}/recovery-codes", csrf)
        assert (status, location) == (303, f"/_gateway/mfa/verify?next={SETTINGS}&max_age=300")
        status, location, _ = await _page(client, f"{SETTINGS}?change=totp")
        assert location == f"/_gateway/mfa/verify?next={SETTINGS}?change=totp&max_age=300"
        assert await gateway.services.store.audit.list(kind=RecoveryCodesRegenerated.kind) == []

        # A forged form is refused whatever the step-up, and so is one another site posted.
        status, _, _ = await _post(client, f"{SETTINGS}/recovery-codes", "forged")
        assert status == 403
        for crossing in ({"Sec-Fetch-Site": "cross-site"}, {"Origin": "https://evil.example"}):
            crossed = await client.post(
                f"{SETTINGS}/recovery-codes",
                data={"csrf": csrf},
                headers={**crossing, "Accept": "text/html"},
                allow_redirects=False,
            )
            assert crossed.status == 403

        fresh = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf(csrf),
        )
        assert fresh.status == 200, await fresh.text()
        csrf = _csrf_of((await _page(client))[2])
        status, _, body = await _post(client, f"{SETTINGS}/devices/dev_someone_elses/forget", csrf)
        assert status == 404
        assert "None of your remembered devices has that id." in body
        status, location, _ = await _post(client, f"{SETTINGS}/devices/forget", csrf)
        assert (status, location) == (303, f"{SETTINGS}?done=devices")
        status, _, body = await _post(client, f"{SETTINGS}/recovery-codes", csrf)
        assert status == 200
        assert body.count("<li><code>") == 10
        assert "The earlier ones no longer work." in body

        # A new authenticator app: a new key, confirmed by a code from it, in place of the old.
        status, location, _ = await _post(client, f"{SETTINGS}/primary/totp", csrf)
        assert (status, location) == (303, f"{SETTINGS}?change=totp")
        status, _, body = await _page(client, location)
        match = KEY.search(body)
        assert status == 200
        assert match is not None
        new_app = pyotp.TOTP(match.group(1).replace(" ", ""))
        assert new_app.secret != totp.secret
        status, _, body = await _post(
            client, f"{SETTINGS}/primary/totp/confirm", csrf, code="000000"
        )
        assert status == 400
        assert 'id="settings-error"' in body
        gateway.clock.advance(30)
        status, location, _ = await _post(
            client, f"{SETTINGS}/primary/totp/confirm", csrf, code=new_app.at(gateway.clock())
        )
        assert (status, location) == (303, f"{SETTINGS}?done=primary")
        [event] = await gateway.services.store.audit.list(kind=MfaPrimaryChanged.kind)
        assert (event.detail["method"], event.detail["previous"]) == ("totp", "totp")

    # The old app no longer signs in; the new one does.
    async with gateway.client() as client:
        csrf = (await _sign_in(client, MAX))["csrf_token"]
        gateway.clock.advance(30)
        for app, status in ((totp, 400), (new_app, 200)):
            answer = await client.post(
                f"{API}/mfa/challenge",
                json={"method": "totp", "code": app.at(gateway.clock())},
                headers=_csrf(csrf),
            )
            assert answer.status == status, await answer.text()


async def test_a_user_without_2fa_is_offered_to_set_it_up(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, AVA)
        status, _, body = await _page(client)
        assert status == 200
        assert 'id="not-enrolled"' in body
        assert f'href="/_gateway/mfa/enrol?next={SETTINGS}"' in body
        csrf = (await (await client.get(f"{API}/me")).json())["csrf_token"]
        status, location, _ = await _post(client, f"{SETTINGS}/recovery-codes", csrf)
        assert (status, location) == (303, SETTINGS)
        status, _, body = await _page(client, f"{SETTINGS}?change=backup")
        assert status == 200
        assert 'id="change-backup-form"' not in body
