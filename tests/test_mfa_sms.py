"""Text messages as the primary method, over HTTP against a real gateway whose SMS driver talks
to a local stand-in for the Twilio-compatible API: set-up pages and the JSON API, the code sent
when the challenge opens (once per code lifetime), a limited "send again", bad numbers, the
primary phone refused as backup, and wrong, expired and reused codes."""

from __future__ import annotations

import html
import re
from typing import Any

import aiohttp
import pytest

from gateway.sandbox.demo import DEMO_PASSWORD
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in
from tests.stand_ins import Provider
from tests.test_sending import ACCOUNT, API_KEY, CODE

HTML = {"Accept": "text/html"}
API = "/_gateway/api"
SENDER = "+61400000000"
PHONE = "+61412345678"
MASKED = "+61 ••• ••• 678"
CODE_LIFETIME = 600.0


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, provider: Provider) -> RunningGateway:
    running: RunningGateway = await make_gateway(
        policies=True,
        sms={
            "provider_url": provider.url,
            "account": ACCOUNT,
            "api_key": API_KEY,
            "sender": SENDER,
        },
        email={"driver": "log"},
    )
    return running


def _texted(provider: Provider, to: str = PHONE) -> str:
    """The code in the newest text message the stand-in received, which went to ``to``."""
    path, _, form = provider.requests[-1]
    assert path.endswith(f"/Accounts/{ACCOUNT}/Messages.json")
    assert (form["To"], form["From"]) == (to, SENDER)
    match = CODE.search(form["Body"])
    assert match
    return match.group(1)


async def _page(client: aiohttp.ClientSession, path: str) -> tuple[int, str]:
    response = await client.get(path, headers=HTML, allow_redirects=False)
    return response.status, html.unescape(await response.text())


def _csrf_of(text: str) -> str:
    match = CSRF_FIELD.search(text)
    assert match
    return match.group(1)


async def _post(
    client: aiohttp.ClientSession, path: str, data: dict[str, str]
) -> tuple[int, str, str]:
    response = await client.post(path, data=data, headers=HTML, allow_redirects=False)
    return (
        response.status,
        html.unescape(await response.text()),
        response.headers.get("Location", ""),
    )


async def _to_phone_step(client: aiohttp.ClientSession) -> str:
    """From the set-up page to the phone step; the form's CSRF token."""
    status, text = await _page(client, "/_gateway/mfa/enrol?next=/")
    assert status == 200
    assert 'id="choose-sms"' in text
    csrf = _csrf_of(text)
    status, _, location = await _post(
        client, "/_gateway/mfa/enrol/sms", {"csrf": csrf, "next": "/"}
    )
    assert (status, location) == (303, "/_gateway/mfa/enrol/sms?next=/")
    status, text = await _page(client, location)
    assert status == 200
    assert 'id="send-sms-code"' in text
    return csrf


async def _set_up_phone(
    client: aiohttp.ClientSession, provider: Provider, typed: str = "0412 345 678"
) -> str:
    """Through the phone step to the backup step; the CSRF token."""
    csrf = await _to_phone_step(client)
    form = {"csrf": csrf, "next": "/"}
    status, text, _ = await _post(
        client, "/_gateway/mfa/enrol/sms/send", {**form, "destination": typed}
    )
    assert status == 200, text
    assert "+61 412 345 678" in text  # read as Australian, shown in full to its owner
    assert MASKED in text
    status, _, location = await _post(
        client, "/_gateway/mfa/enrol/sms/confirm", {**form, "code": _texted(provider)}
    )
    assert (status, location) == (303, "/_gateway/mfa/enrol/backup?next=/")
    return csrf


async def _whoami(client: aiohttp.ClientSession) -> dict[str, str]:
    body: dict[str, Any] = await (await client.get("/api/whoami")).json()
    headers: dict[str, str] = body["headers"]
    return headers


async def _sign_out(client: aiohttp.ClientSession) -> None:
    _, text = await _page(client, "/_gateway/logout")
    await client.post("/_gateway/logout", data={"csrf": _csrf_of(text)})


async def test_a_member_sets_up_text_messages_and_signs_in_with_a_texted_code(
    gateway: RunningGateway, provider: Provider
) -> None:
    store = gateway.services.store
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        csrf = await _set_up_phone(max_, provider)
        # A member may skip the backup: the phone alone is enrolled.
        status, text, _ = await _post(
            max_, "/_gateway/mfa/enrol/finish", {"csrf": csrf, "next": "/"}
        )
        assert status == 200
        assert 'id="recovery-codes"' in text
        user = await store.users.find_by_email("max@harbour.example")
        assert user is not None
        assert await store.factors.kinds(user.id) == [("sms", "primary")]
        rows = await store.db.fetch_all("SELECT secret FROM mfa_factors")
        assert all("412345678" not in row["secret"] for row in rows)
        headers = await _whoami(max_)
        assert (headers["X-Gateway-Mfa"], headers["X-Gateway-Mfa-Method"]) == ("verified", "sms")
        await _sign_out(max_)

        # The challenge texts a code when it opens, and not again on a reload.
        gateway.clock.advance(60)
        await sign_in(max_, email="max@harbour.example")
        sent_before = len(provider.requests)
        status, text = await _page(max_, "/_gateway/mfa/verify?next=/")
        assert status == 200
        assert len(provider.requests) == sent_before + 1
        assert f"We sent a code to {MASKED}" in text
        assert 'id="send-sms-again"' in text
        assert 'id="use-app"' not in text  # no authenticator app to use
        assert 'id="use-recovery"' in text
        first = _texted(provider)
        status, text = await _page(max_, "/_gateway/mfa/verify?next=/")
        assert len(provider.requests) == sent_before + 1
        assert f"We sent a code to {MASKED}" in text
        # "Send again" sends a new code; the first one stops working.
        csrf = _csrf_of(text)
        status, text, _ = await _post(
            max_, "/_gateway/mfa/verify/send", {"csrf": csrf, "next": "/", "method": "sms"}
        )
        assert status == 200
        assert len(provider.requests) == sent_before + 2
        second = _texted(provider)
        verify = {"csrf": csrf, "next": "/", "method": "sms"}
        if first != second:
            status, text, _ = await _post(max_, "/_gateway/mfa/verify", {**verify, "code": first})
            assert status == 400
            assert 'id="send-sms-again"' in text
        status, _, location = await _post(max_, "/_gateway/mfa/verify", {**verify, "code": second})
        assert (status, location) == (303, "/")
        headers = await _whoami(max_)
        assert (headers["X-Gateway-Mfa"], headers["X-Gateway-Mfa-Method"]) == ("verified", "sms")


async def test_send_again_is_limited_and_the_page_says_when_to_try(
    gateway: RunningGateway, provider: Provider
) -> None:
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        csrf = await _set_up_phone(max_, provider)
        await _post(max_, "/_gateway/mfa/enrol/finish", {"csrf": csrf, "next": "/"})
        await _sign_out(max_)
        await sign_in(max_, email="max@harbour.example")
        _, text = await _page(max_, "/_gateway/mfa/verify?next=/")
        csrf = _csrf_of(text)
        again = {"csrf": csrf, "next": "/", "method": "sms"}
        statuses = []
        for _ in range(5):
            status, text, _ = await _post(max_, "/_gateway/mfa/verify/send", again)
            statuses.append(status)
        assert 429 in statuses
        assert statuses[statuses.index(429) :] == [429] * (5 - statuses.index(429))
        assert re.search(r"Wait \d+ minutes?, then send again", text), text
        sent = len(provider.requests)
        # The code already sent still signs in; nothing more went out.
        status, _, location = await _post(
            max_, "/_gateway/mfa/verify", {**again, "code": _texted(provider)}
        )
        assert (status, location) == (303, "/")
        assert len(provider.requests) == sent


@pytest.mark.parametrize(
    ("typed", "says"),
    [
        ("04l2 345 678", "Enter a mobile number"),
        ("1900 123 456", "Premium-rate"),
        ("02 9374 4000", "not a mobile number"),
        ("0412 345", "not a valid phone number"),
        ("+999 412 345 678", "country code does not exist"),
    ],
)
async def test_numbers_codes_cannot_go_to_are_refused_and_nothing_is_sent(
    gateway: RunningGateway, provider: Provider, typed: str, says: str
) -> None:
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        csrf = await _to_phone_step(max_)
        status, text, _ = await _post(
            max_, "/_gateway/mfa/enrol/sms/send", {"csrf": csrf, "next": "/", "destination": typed}
        )
        assert status == 400
        assert says in text
        assert 'id="send-sms-code"' in text
    assert provider.requests == []
    user = await gateway.services.store.users.find_by_email("max@harbour.example")
    assert user is not None
    pending = await gateway.services.store.factors.pending(user.id)
    assert pending is not None
    assert pending.phone_sealed is None


async def test_the_primary_phone_is_refused_as_the_backup(
    gateway: RunningGateway, provider: Provider
) -> None:
    async with gateway.client() as ava:
        await sign_in(ava, email="ava@harbour.example")
        csrf = await _set_up_phone(ava, provider)
        status, text = await _page(ava, "/_gateway/mfa/enrol/backup?next=/")
        assert status == 200
        assert 'id="skip-backup"' not in text  # a principal must add one
        sent = len(provider.requests)
        backup = {"csrf": csrf, "next": "/", "kind": "sms", "destination": "+61 412 345 678"}
        status, text, _ = await _post(ava, "/_gateway/mfa/enrol/backup", backup)
        assert status == 400
        assert "must differ from the number you use to sign in" in text
        assert len(provider.requests) == sent
        # Another number is fine, and finishes the set-up.
        other = {**backup, "destination": "0498 765 432"}
        status, text, _ = await _post(ava, "/_gateway/mfa/enrol/backup", other)
        assert status == 200, text
        code = _texted(provider, "+61498765432")
        status, text, _ = await _post(
            ava, "/_gateway/mfa/enrol/backup/confirm", {**other, "code": code}
        )
        assert status == 200
        assert 'id="recovery-codes"' in text
    user = await gateway.services.store.users.find_by_email("ava@harbour.example")
    assert user is not None
    assert sorted(await gateway.services.store.factors.kinds(user.id)) == [
        ("sms", "backup"),
        ("sms", "primary"),
    ]


async def test_wrong_expired_and_reused_codes_and_a_step_left_too_long(
    gateway: RunningGateway, provider: Provider
) -> None:
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        csrf = await _to_phone_step(max_)
        form = {"csrf": csrf, "next": "/"}
        confirm = "/_gateway/mfa/enrol/sms/confirm"
        # No code sent yet.
        status, text, _ = await _post(max_, confirm, {**form, "code": "123456"})
        assert (status, "No code was sent" in text) == (400, True)
        await _post(max_, "/_gateway/mfa/enrol/sms/send", {**form, "destination": "0412345678"})
        code = _texted(provider)
        wrong = "000000" if code != "000000" else "111111"
        status, text, _ = await _post(max_, confirm, {**form, "code": wrong})
        assert status == 400
        assert "not accepted" in text
        assert 'id="confirm-sms"' in text  # the code form again
        # The page opened again still shows the code form for the code on its way.
        status, text = await _page(max_, "/_gateway/mfa/enrol/sms?next=/")
        assert 'id="confirm-sms"' in text
        assert "+61 412 345 678" in text
        _, text = await _page(max_, "/_gateway/mfa/enrol/sms?next=/&change=1")
        assert 'id="send-sms-code"' in text
        # The step runs out: it starts over and says why.
        gateway.clock.advance(CODE_LIFETIME + 1)
        status, text, _ = await _post(max_, confirm, {**form, "code": code})
        assert status == 409
        assert "Enter your mobile number again" in text
        assert 'id="send-sms-code"' in text
        # In the new step, the old code has expired.
        status, text, _ = await _post(max_, confirm, {**form, "code": code})
        assert status == 400
        assert "expired" in text
        # The restarted step: a new code proves the phone; the code cannot be used again.
        await _post(max_, "/_gateway/mfa/enrol/sms/send", {**form, "destination": "0412345678"})
        again = _texted(provider)
        status, _, location = await _post(max_, confirm, {**form, "code": again})
        assert (status, location) == (303, "/_gateway/mfa/enrol/backup?next=/")
        await _post(max_, "/_gateway/mfa/enrol/finish", form)
        await _sign_out(max_)
        await sign_in(max_, email="max@harbour.example")
        _, text = await _page(max_, "/_gateway/mfa/verify?next=/")
        verify = {"csrf": _csrf_of(text), "next": "/", "method": "sms"}
        status, _, _ = await _post(max_, "/_gateway/mfa/verify", {**verify, "code": again})
        assert status == 400  # the enrolment's code is for the enrolment only


async def test_text_messages_are_not_offered_where_they_cannot_be_sent(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)  # no SMS provider
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        status, text = await _page(max_, "/_gateway/mfa/enrol?next=/")
        assert 'id="choose-sms"' not in text
        csrf = _csrf_of(text)
        status, _, location = await _post(
            max_, "/_gateway/mfa/enrol/sms", {"csrf": csrf, "next": "/"}
        )
        assert (status, location) == (303, "/_gateway/mfa/enrol?next=/")
        status, text, _ = await _post(
            max_,
            "/_gateway/mfa/enrol/sms/send",
            {"csrf": csrf, "next": "/", "destination": "0412345678"},
        )
        assert status == 409
        assert "Start setting up again" in text
    # Over JSON too: GET /me lists only what can be set up here, though the policy accepts
    # text messages, and starting them is refused.
    async with gateway.client() as client:
        csrf = (await _api_sign_in(client, "max@harbour.example"))["csrf_token"]
        me = await (await client.get(f"{API}/me")).json()
        assert me["mfa"]["allowed_methods"] == ["totp"]
        response = await client.post(
            f"{API}/mfa/enrol/sms", json={"phone": PHONE}, headers=_h(csrf)
        )
        assert response.status == 409, await response.text()


async def test_forged_sms_posts_are_refused(gateway: RunningGateway, provider: Provider) -> None:
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        await _to_phone_step(max_)
        for path in ("sms", "sms/send", "sms/confirm"):
            status, _, _ = await _post(
                max_,
                f"/_gateway/mfa/enrol/{path}",
                {"csrf": "forged", "next": "/", "destination": "0412345678", "code": "1"},
            )
            assert status == 403, path
    assert provider.requests == []


# The JSON API


def _h(token: str) -> dict[str, str]:
    return {"X-CSRF-Token": token}


async def _api_sign_in(client: aiohttp.ClientSession, email: str) -> dict[str, Any]:
    response = await client.post(f"{API}/session", json={"email": email, "password": DEMO_PASSWORD})
    assert response.status == 200, await response.text()
    body: dict[str, Any] = await response.json()
    return body


async def _problem(response: aiohttp.ClientResponse, status: int, slug: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["type"].endswith(f"/{slug}"), body
    return body


async def test_text_messages_over_json(gateway: RunningGateway, provider: Provider) -> None:
    async with gateway.client() as client:
        state = await _api_sign_in(client, "max@harbour.example")
        csrf = state["csrf_token"]
        me = await (await client.get(f"{API}/me")).json()
        assert me["mfa"]["allowed_methods"] == ["sms", "totp"]  # this gateway can text
        enrol = f"{API}/mfa/enrol/sms"
        # CSRF header required; cross-site refused; nothing sent for either.
        await _problem(await client.post(enrol, json={"phone": PHONE}), 403, "csrf-failed")
        cross = {**_h(csrf), "Sec-Fetch-Site": "cross-site"}
        await _problem(
            await client.post(enrol, json={"phone": PHONE}, headers=cross), 403, "cross-site"
        )
        # Numbers codes cannot go to.
        for typed, says in (("1900 123 456", "Premium-rate"), ("not a number", "Enter a mobile")):
            body = await _problem(
                await client.post(enrol, json={"phone": typed}, headers=_h(csrf)),
                400,
                "bad-destination",
            )
            assert says in body["detail"]
        assert provider.requests == []
        started = await client.post(enrol, json={"phone": "0412 345 678"}, headers=_h(csrf))
        assert started.status == 201, await started.text()
        setup = await started.json()
        assert setup["sent_to"] == MASKED
        assert setup["next_step"] == f"{API}/mfa/enrol/sms/confirm"
        code = _texted(provider)
        confirm = f"{API}/mfa/enrol/sms/confirm"
        wrong = "000000" if code != "000000" else "111111"
        await _problem(
            await client.post(confirm, json={"code": wrong}, headers=_h(csrf)), 400, "code-refused"
        )
        await _problem(
            await client.post(confirm, json={"code": 5}, headers=_h(csrf)), 422, "invalid-body"
        )
        confirmed = await client.post(confirm, json={"code": code}, headers=_h(csrf))
        assert confirmed.status == 200, await confirmed.text()
        # As for an app: a member is offered the backup, and may skip it by finishing.
        answer = await confirmed.json()
        assert (answer["next_step"], answer["backup"]) == (f"{API}/mfa/enrol/finish", "offered")
        assert answer["backup_kinds"] == ["sms", "email"]
        finished = await client.post(f"{API}/mfa/enrol/finish", headers=_h(csrf))
        assert finished.status == 201, await finished.text()
        done = await finished.json()
        assert len(done["recovery_codes"]) == 10
        assert (await _whoami(client))["X-Gateway-Mfa-Method"] == "sms"
        me = await (await client.get(f"{API}/me")).json()
        assert me["mfa"]["methods"] == ["sms"]
        await client.delete(f"{API}/session", headers=_h(done["csrf_token"]))

        state = await _api_sign_in(client, "max@harbour.example")
        assert state["next"] == "challenge"
        csrf = state["csrf_token"]
        send = f"{API}/mfa/challenge/send"
        by_sms = {"method": "sms"}
        challenge = f"{API}/mfa/challenge"
        await _problem(await client.post(send, json=by_sms), 403, "csrf-failed")
        await _problem(await client.post(send, headers=_h(csrf)), 415, "unsupported-media-type")
        sent = len(provider.requests)
        first = await client.post(send, json=by_sms, headers=_h(csrf))
        assert first.status == 200, await first.text()
        assert (await first.json())["sent_to"] == MASKED
        assert len(provider.requests) == sent + 1
        assert (await client.post(send, json=by_sms, headers=_h(csrf))).status == 200
        assert len(provider.requests) == sent + 1  # the code on its way still works
        again = await client.post(send, json={**by_sms, "again": True}, headers=_h(csrf))
        assert again.status == 200, await again.text()
        assert len(provider.requests) == sent + 2  # asked for: a new one
        code = _texted(provider)
        # The code runs out; a new one is sent on request.
        gateway.clock.advance(CODE_LIFETIME)
        body = await _problem(
            await client.post(challenge, json={"method": "sms", "code": code}, headers=_h(csrf)),
            400,
            "code-refused",
        )
        assert (await client.post(send, json=by_sms, headers=_h(csrf))).status == 200
        assert len(provider.requests) == sent + 3
        code = _texted(provider)
        passed = await client.post(
            challenge, json={"method": "sms", "code": code}, headers=_h(csrf)
        )
        assert passed.status == 200, await passed.text()
        answer = await passed.json()
        assert (answer["method"], answer["mfa_verified"]) == ("sms", True)
        # Reused: refused with the one message.
        await _problem(
            await client.post(
                challenge, json={"method": "sms", "code": code}, headers=_h(answer["csrf_token"])
            ),
            400,
            "code-refused",
        )


async def test_json_sends_past_the_limit_get_429_with_retry_after(
    gateway: RunningGateway, provider: Provider
) -> None:
    async with gateway.client() as client:
        csrf = (await _api_sign_in(client, "max@harbour.example"))["csrf_token"]
        enrol = f"{API}/mfa/enrol/sms"
        statuses = []
        for _ in range(6):
            response = await client.post(enrol, json={"phone": PHONE}, headers=_h(csrf))
            statuses.append(response.status)
        assert statuses[:5] == [201] * 5
        body = await _problem(response, 429, "send-limited")
        assert int(response.headers["Retry-After"]) > 0
        assert "Wait" in body["detail"]
        assert len(provider.requests) == 5
        # A carrier failure says try again and spends nothing.
        gateway.clock.advance(15 * 60 + 1)  # the user's window is over; this number's is not
        provider.status = 500
        response = await client.post(enrol, json={"phone": "0498 765 432"}, headers=_h(csrf))
        await _problem(response, 503, "send-failed")
        # Without a phone, the sign-in code has nowhere to go.
        response = await client.post(
            f"{API}/mfa/challenge/send", json={"method": "sms"}, headers=_h(csrf)
        )
        await _problem(response, 409, "enrolment-required")
