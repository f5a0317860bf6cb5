"""A user's own 2FA settings over JSON, against a real gateway on loopback, a real SQLite file, a
real SMTP server (aiosmtpd) and the SMS stand-in: remembered devices listed and forgotten,
recovery codes made anew (the old ones die, the new work once), recent sign-ins, the primary
method switched and the backup changed; and every refusal: a stale step-up, another user's
device, a cross-site call, a user without 2FA. Nothing half-changed, never a 500."""

from __future__ import annotations

from collections.abc import Mapping
from email import message_from_bytes
from email.policy import default
from typing import Any

import aiohttp
import pyotp
import pytest

from gateway.audit import (
    DevicesForgotten,
    MfaBackupChanged,
    MfaPrimaryChanged,
    RecoveryCodesRegenerated,
)
from gateway.secondfactor.devices import token_hash
from gateway.store.sign_ins import KEEP_PER_USER
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox, Provider
from tests.test_browser_mfa import _mailed_code, smtp_section
from tests.test_mfa_backup_sms import sms_section
from tests.test_mfa_sms import _texted
from tests.test_user_api import API, _csrf, _enrol, _sign_in

PROBLEM = "application/problem+json"
PHONE = "0412 345 678"
AVA, MAX, LEO = "ava@harbour.example", "max@harbour.example", "leo@kauri.example"
REMEMBERED = "gw-mfa-device"
FIREFOX = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0"


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, mailbox: Mailbox, provider: Provider
) -> RunningGateway:
    running: RunningGateway = await make_gateway(
        policies=True, email=smtp_section(mailbox), sms=sms_section(provider)
    )
    return running


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    assert response.status != 500, await response.text()
    if response.status >= 400:
        assert response.content_type == PROBLEM, await response.text()
    body: dict[str, Any] = await response.json(content_type=None)
    return response.status, body


async def _call(
    client: aiohttp.ClientSession,
    method: str,
    path: str,
    csrf: str | None = None,
    body: Mapping[str, Any] | None = None,
    **headers: str,
) -> tuple[int, dict[str, Any]]:
    sent = {**({} if csrf is None else _csrf(csrf)), **headers}
    return await _answer(await client.request(method, f"{API}/{path}", json=body, headers=sent))


async def _user_id(gateway: RunningGateway, email: str) -> str:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user.id


async def _remembered(
    gateway: RunningGateway, email: str, user_agent: str = FIREFOX
) -> tuple[aiohttp.ClientSession, pyotp.TOTP, list[str], str]:
    """``email`` enrolled with an app, then signed in again in a fresh browser that ticks
    "don't ask again": the client, the app, the recovery codes and the CSRF token."""
    first = gateway.client()
    async with first:
        totp, finished = await _enrol(first, gateway, (await _sign_in(first, email))["csrf_token"])
    gateway.clock.advance(30)
    client = gateway.client(headers={"User-Agent": user_agent})
    csrf = (await _sign_in(client, email))["csrf_token"]
    status, passed = await _call(
        client,
        "POST",
        "mfa/challenge",
        csrf,
        {"method": "totp", "code": totp.at(gateway.clock()), "remember_device": True},
    )
    assert status == 200, passed
    return client, totp, finished["recovery_codes"], passed["csrf_token"]


def _subjects(box: Mailbox, to: str) -> list[str]:
    mails = [message_from_bytes(raw, policy=default) for raw in box.received]
    return [str(m["Subject"]) for m in mails if m["To"] == to]


async def test_devices_are_listed_and_forgotten_after_a_fresh_second_factor(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    max_client, totp, _, csrf = await _remembered(gateway, MAX)
    leo_client, _, _, leo_csrf = await _remembered(gateway, LEO)
    async with max_client, leo_client:
        status, listed = await _call(max_client, "GET", "mfa/devices")
        assert status == 200, listed
        [device] = listed["devices"]
        assert device["current"] is True
        assert device["browser"] == "Firefox on Windows"
        assert device["id"].startswith("dev_")
        cookie = max_client.cookie_jar.filter_cookies(gateway.url)[REMEMBERED].value
        assert cookie not in device["id"]
        assert token_hash(cookie) not in device["id"]
        [leo_device] = (await _call(leo_client, "GET", "mfa/devices"))[1]["devices"]

        # Another user's device is not told apart from an unknown one; nothing is forgotten.
        status, problem = await _call(max_client, "DELETE", f"mfa/devices/{leo_device['id']}", csrf)
        assert (status, problem["type"].split("/")[-1]) == (404, "device-not-found")
        assert len((await _call(leo_client, "GET", "mfa/devices"))[1]["devices"]) == 1
        for unknown in ("dev_nonsense", "d%C3%A9v%F0%9F%94%91", "x" * 300):
            status, problem = await _call(max_client, "DELETE", f"mfa/devices/{unknown}", csrf)
            assert (status, problem["type"].split("/")[-1]) == (404, "device-not-found")

        # Cross-site: refused before anything is looked at.
        status, problem = await _call(
            max_client,
            "DELETE",
            f"mfa/devices/{device['id']}",
            csrf,
            None,
            **{"Sec-Fetch-Site": "cross-site"},
        )
        assert (status, problem["type"].split("/")[-1]) == (403, "cross-site")

        # Five minutes and a second after the check: asked for a fresh one; nothing forgotten.
        gateway.clock.advance(301)
        status, problem = await _call(max_client, "DELETE", f"mfa/devices/{device['id']}", csrf)
        assert (status, problem["type"].split("/")[-1]) == (403, "step-up-required")
        assert problem["step_up_url"] == (
            "/_gateway/mfa/verify?next=/_gateway/mfa/settings&max_age=300"
        )
        assert len((await _call(max_client, "GET", "mfa/devices"))[1]["devices"]) == 1
        fresh = {"method": "totp", "code": totp.at(gateway.clock())}
        status, state = await _call(max_client, "POST", "mfa/challenge", csrf, fresh)
        assert status == 200, state
        sent_before = len(mailbox.received)
        status, done = await _call(
            max_client, "DELETE", f"mfa/devices/{device['id']}", state["csrf_token"]
        )
        assert (status, done["forgotten"]) == (200, 1), done
        assert (await _call(max_client, "GET", "mfa/devices"))[1]["devices"] == []
        assert len((await _call(leo_client, "GET", "mfa/devices"))[1]["devices"]) == 1

        # Audited and emailed, no secret in the email. Leo's check is as old: refused.
        [event] = await gateway.services.store.audit.list(kind=DevicesForgotten.kind)
        assert (event.subject, event.detail["devices"]) == (await _user_id(gateway, MAX), 1)
        await gateway.services.sending.settle()
        assert len(mailbox.received) == sent_before + 1
        assert _subjects(mailbox, MAX)[-1] == "Your two-factor authentication settings changed"
        status, done = await _call(leo_client, "DELETE", "mfa/devices", leo_csrf)
        assert status == 403
        assert len((await _call(leo_client, "GET", "mfa/devices"))[1]["devices"]) == 1


async def test_new_recovery_codes_retire_the_old_ones_and_work_once(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, MAX))["csrf_token"]
        _, finished = await _enrol(client, gateway, csrf)
        old = finished["recovery_codes"]
        csrf = finished["csrf_token"]
        status, made = await _call(client, "POST", "mfa/recovery-codes", csrf)
        assert status == 201, made
        new = made["recovery_codes"]
        assert len(new) == 10
        assert not set(new) & set(old)
        [event] = await gateway.services.store.audit.list(kind=RecoveryCodesRegenerated.kind)
        assert (event.detail["codes"], event.detail["unused_replaced"]) == (10, 10)
        await gateway.services.sending.settle()
        assert "Your two-factor authentication settings changed" in _subjects(mailbox, MAX)
        mail = message_from_bytes(mailbox.received[-1], policy=default)
        text = mail.get_body().get_content()  # type: ignore[union-attr]
        assert not any(code in text for code in new)

    async with gateway.client() as client:
        csrf = (await _sign_in(client, MAX))["csrf_token"]
        refused = {"method": "recovery", "code": old[0]}
        status, problem = await _call(client, "POST", "mfa/challenge", csrf, refused)
        assert (status, problem["type"].split("/")[-1]) == (400, "code-refused")
        status, passed = await _call(
            client, "POST", "mfa/challenge", csrf, {"method": "recovery", "code": new[0]}
        )
        assert status == 200, passed
        assert passed["recovery_codes_left"] == 9
    async with gateway.client() as client:
        csrf = (await _sign_in(client, MAX))["csrf_token"]
        again = {"method": "recovery", "code": new[0]}
        assert (await _call(client, "POST", "mfa/challenge", csrf, again))[0] == 400


async def test_recent_sign_ins_say_when_where_which_browser_and_how(
    gateway: RunningGateway,
) -> None:
    client, _, _, _ = await _remembered(gateway, MAX)
    async with client:
        status, listed = await _call(client, "GET", "mfa/sign-ins")
        assert status == 200, listed
        assert listed["time_zone"] == "Australia/Sydney"  # the shipped AU policy's zone
        latest, enrolled = listed["sign_ins"]
        assert latest["current"] is True
        assert latest["browser"] == "Firefox on Windows"
        assert latest["method"] == "totp"
        assert latest["client_addr"] == "127.0.0.1"
        assert latest["at"].endswith("+11:00")
        assert enrolled["current"] is False
        assert enrolled["method"] == "totp"  # the enrolment's own check
        # Signing in again on the remembered device: its method says so; the newest 20 stay.
        for _ in range(KEEP_PER_USER + 2):
            gateway.clock.advance(60)
            client.cookie_jar.clear(lambda cookie: cookie.key == "gw-session")
            assert (await _sign_in(client, MAX))["mfa_verified"] is True
        status, listed = await _call(client, "GET", "mfa/sign-ins")
        assert status == 200, listed
        assert len(listed["sign_ins"]) == KEEP_PER_USER
        assert {s["method"] for s in listed["sign_ins"]} == {"device"}
        assert [s["current"] for s in listed["sign_ins"]][:2] == [True, False]
        # Passed by the remembered device alone: enough to look, never to change.
        me = await (await client.get(f"{API}/me")).json()
        assert me["mfa"]["method"] == "device"
        status, problem = await _call(client, "POST", "mfa/recovery-codes", me["csrf_token"])
        assert (status, problem["type"].split("/")[-1]) == (403, "step-up-required")
    async with gateway.client() as other:
        await _sign_in(other, AVA)
        status, own = await _call(other, "GET", "mfa/sign-ins")
        assert status == 200, own  # no 2FA set up: nothing to pass first
        assert [s["method"] for s in own["sign_ins"]] == [None]
        assert [s["browser"] for s in own["sign_ins"]] == ["Python"]  # aiohttp's User-Agent


async def test_the_primary_method_is_switched_and_the_backup_changed(
    gateway: RunningGateway, mailbox: Mailbox, provider: Provider
) -> None:
    max_id = await _user_id(gateway, MAX)
    async with gateway.client() as client:
        csrf = (await _sign_in(client, MAX))["csrf_token"]
        _, finished = await _enrol(client, gateway, csrf)
        csrf = finished["csrf_token"]

        # To text messages: the code goes to the phone; a wrong one changes nothing.
        status, started = await _call(client, "POST", "mfa/primary/sms", csrf, {"phone": PHONE})
        assert status == 201, started
        assert started["next_step"] == f"{API}/mfa/primary/sms/confirm"
        texted = _texted(provider, "+61412345678")
        wrong = "000000" if texted != "000000" else "111111"
        status, problem = await _call(
            client, "POST", "mfa/primary/sms/confirm", csrf, {"code": wrong}
        )
        assert (status, problem["type"].split("/")[-1]) == (400, "code-refused")
        assert await gateway.services.store.factors.kinds(max_id) == [("totp", "primary")]
        confirm = {"code": texted}
        status, changed = await _call(client, "POST", "mfa/primary/sms/confirm", csrf, confirm)
        assert status == 200, changed
        assert (changed["change"], changed["method"]) == ("primary", "sms")
        assert await gateway.services.store.factors.kinds(max_id) == [("sms", "primary")]
        [event] = await gateway.services.store.audit.list(kind=MfaPrimaryChanged.kind)
        assert (event.detail["method"], event.detail["previous"]) == ("sms", "totp")
        assert "412" not in event.detail["to"][:-3]  # masked
        me = await (await client.get(f"{API}/me")).json()
        assert me["mfa"]["methods"] == ["sms"]

        # The backup may not be the primary phone; an email is proved, then replaces nothing.
        same = {"kind": "sms", "destination": "0412 345 678"}
        status, problem = await _call(client, "POST", "mfa/backup", csrf, same)
        assert (status, problem["type"].split("/")[-1]) == (400, "bad-destination")
        email = {"kind": "email", "destination": "max.backup@harbour.example"}
        status, sent = await _call(client, "POST", "mfa/backup", csrf, email)
        assert status == 200, sent
        assert await gateway.services.store.factors.kinds(max_id) == [("sms", "primary")]
        code = {"code": _mailed_code(mailbox, "max.backup@harbour.example")}
        status, changed = await _call(client, "POST", "mfa/backup/confirm", csrf, code)
        assert (status, changed["method"]) == (200, "email"), changed
        assert sorted(await gateway.services.store.factors.kinds(max_id)) == [
            ("email", "backup"),
            ("sms", "primary"),
        ]
        # A code used once does not change it again.
        status, problem = await _call(client, "POST", "mfa/backup/confirm", csrf, code)
        assert status == 400, problem

        # Then a backup phone in place of the email; the primary cannot move onto it.
        other = {"kind": "sms", "destination": "+61 412 999 888"}
        assert (await _call(client, "POST", "mfa/backup", csrf, other))[0] == 200
        code = {"code": _texted(provider, "+61412999888")}
        assert (await _call(client, "POST", "mfa/backup/confirm", csrf, code))[0] == 200
        assert sorted(await gateway.services.store.factors.kinds(max_id)) == [
            ("sms", "backup"),
            ("sms", "primary"),
        ]
        onto = {"phone": "0412 999 888"}
        status, problem = await _call(client, "POST", "mfa/primary/sms", csrf, onto)
        assert (status, problem["type"].split("/")[-1]) == (400, "bad-destination")
        events = await gateway.services.store.audit.list(kind=MfaBackupChanged.kind)
        assert sorted(str(e.detail["previous"]) for e in events) == ["None", "email"]
        await gateway.services.sending.settle()
        notices = [s for s in _subjects(mailbox, MAX) if "settings changed" in s]
        assert len(notices) == 3


async def test_a_user_without_2fa_has_nothing_to_change(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, AVA))["csrf_token"]
        for method, path, body in (
            ("POST", "mfa/recovery-codes", None),
            ("POST", "mfa/primary/totp", None),
            ("DELETE", "mfa/devices", None),
            ("POST", "mfa/backup", {"kind": "email", "destination": "a@harbour.example"}),
        ):
            status, problem = await _call(client, method, path, csrf, body)
            assert (status, problem["type"].split("/")[-1]) == (409, "not-enrolled"), path
        assert await _call(client, "GET", "mfa/devices") == (200, {"devices": []})
        status, problem = await _call(
            client, "POST", "mfa/recovery-codes", csrf, Origin="https://evil.example"
        )
        assert (status, problem["type"].split("/")[-1]) == (403, "cross-site")
    async with gateway.client() as client:
        for method, path in (("GET", "mfa/devices"), ("POST", "mfa/recovery-codes")):
            assert (await _call(client, method, path))[0] == 401


async def test_an_enrolled_user_looks_only_after_passing_the_second_factor(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await _enrol(client, gateway, (await _sign_in(client, MAX))["csrf_token"])
    async with gateway.client() as client:
        assert (await _sign_in(client, MAX))["next"] == "challenge"
        for path in ("mfa/devices", "mfa/sign-ins"):
            status, problem = await _call(client, "GET", path)
            assert (status, problem["type"].split("/")[-1]) == (403, "step-up-required"), path
            assert problem["step_up_url"] == "/_gateway/mfa/verify?next=/_gateway/mfa/settings"


async def test_forgetting_devices_signs_out_the_sessions_they_let_in(
    gateway: RunningGateway,
) -> None:
    max_client, _, _, csrf = await _remembered(gateway, MAX)
    async with max_client:
        cookie = max_client.cookie_jar.filter_cookies(gateway.url)[REMEMBERED]
        # Another session of the same browser: the remembered device lets it past 2FA.
        laptop = gateway.client(headers={"User-Agent": FIREFOX})
        async with laptop:
            laptop.cookie_jar.update_cookies({REMEMBERED: cookie.value}, gateway.url)
            await _sign_in(laptop, MAX)
            me = await (await laptop.get(f"{API}/me")).json()
            assert (me["mfa"]["verified"], me["mfa"]["method"]) == (True, "device"), me
            status, done = await _call(max_client, "DELETE", "mfa/devices", csrf)
            assert (status, done["forgotten"]) == (200, 1), done
            assert "signed out" in done["message"]
            assert (await laptop.get(f"{API}/me")).status == 401  # ended, in every process
        # The session that asked stays signed in.
        assert (await max_client.get(f"{API}/me")).status == 200
