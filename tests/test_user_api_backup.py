"""The backup method over the user JSON API, against a real gateway on loopback, a real SQLite
file, a real SMTP server (aiosmtpd) and a local stand-in for the SMS API: a principal enrols
entirely over JSON and signs in with the backup; bad input of every kind is refused with a
clear problem, saves nothing and never gets a 500."""

from __future__ import annotations

from typing import Any

import aiohttp
import pyotp
import pytest

from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox, Provider
from tests.test_browser_mfa import _mailed_code, smtp_section
from tests.test_mfa_backup_sms import _texted_code, sms_section
from tests.test_user_api import API, _csrf, _me, _sign_in

BACKUP = "ava.backup@harbour.example"
PROBLEM = "application/problem+json"


@pytest.fixture
async def gateway(
    make_gateway: GatewayFactory, mailbox: Mailbox, provider: Provider
) -> RunningGateway:
    running: RunningGateway = await make_gateway(
        policies=True, email=smtp_section(mailbox), sms=sms_section(provider)
    )
    return running


async def _post(
    client: aiohttp.ClientSession, path: str, csrf: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    response = await client.post(f"{API}/{path}", json=body, headers=_csrf(csrf))
    assert response.status != 500, await response.text()
    if response.status >= 400:
        assert response.content_type == PROBLEM
    answer: dict[str, Any] = await response.json()
    return response.status, answer


async def _confirm_app(
    client: aiohttp.ClientSession, gateway: RunningGateway, csrf: str
) -> tuple[pyotp.TOTP, dict[str, Any]]:
    """Start and confirm an authenticator app; the confirmation's answer."""
    status, setup = await _post(client, "mfa/enrol/totp", csrf)
    assert status == 201
    totp = pyotp.TOTP(setup["key"].replace(" ", ""))
    status, confirmed = await _post(
        client, "mfa/enrol/totp/confirm", csrf, {"code": totp.at(gateway.clock())}
    )
    assert status == 200, confirmed
    return totp, confirmed


async def _enrolled_with_a_backup_email(
    client: aiohttp.ClientSession, gateway: RunningGateway, mailbox: Mailbox
) -> tuple[pyotp.TOTP, dict[str, Any]]:
    """Ava, enrolled over JSON with the app and the backup email; the finishing answer."""
    csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
    totp, _ = await _confirm_app(client, gateway, csrf)
    await _post(client, "mfa/enrol/backup", csrf, {"kind": "email", "destination": BACKUP})
    code = _mailed_code(mailbox, BACKUP)
    assert (await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code}))[0] == 200
    status, finished = await _post(client, "mfa/enrol/finish", csrf)
    assert status == 201
    return totp, finished


async def _kinds(gateway: RunningGateway, email: str) -> list[tuple[str, str]]:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return sorted(await gateway.services.store.factors.kinds(user.id))


async def _finished_with_a_backup_email(
    client: aiohttp.ClientSession, gateway: RunningGateway, csrf: str, *, primary: str
) -> None:
    """Finish Ava's enrolment: ten recovery codes, the session verified, the ``primary``
    method and the backup email saved."""
    status, finished = await _post(client, "mfa/enrol/finish", csrf)
    assert status == 201, finished
    assert len(finished["recovery_codes"]) == 10
    assert finished["mfa_verified"] is True
    assert await _kinds(gateway, "ava@harbour.example") == [
        ("email", "backup"),
        (primary, "primary"),
    ]


async def test_a_principal_enrols_over_json_with_a_backup_email_and_signs_in_with_it(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        _, confirmed = await _confirm_app(client, gateway, csrf)
        assert confirmed["next_step"] == f"{API}/mfa/enrol/backup"
        assert confirmed["backup"] == "required"
        assert confirmed["backup_kinds"] == ["sms", "email"]
        # A principal cannot skip the backup step.
        status, problem = await _post(client, "mfa/enrol/finish", csrf)
        assert status == 409
        assert problem["type"].endswith("/backup-required")
        assert "recovery_codes" not in problem

        status, sent = await _post(
            client, "mfa/enrol/backup", csrf, {"kind": "email", "destination": BACKUP}
        )
        assert status == 200, sent
        assert sent["kind"] == "email"
        assert sent["sent_to"] == "a•••@harbour.example"
        assert sent["code_expires_at"]
        assert BACKUP not in str(sent)
        code = _mailed_code(mailbox, BACKUP)
        status, proved = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code})
        assert status == 200, proved
        assert proved["next_step"] == f"{API}/mfa/enrol/finish"
        assert proved["backup"] == "proved"
        # The code is used: the same code again is refused, and says to send a new one.
        status, reused = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code})
        assert status == 400
        assert reused["type"].endswith("/code-refused")
        assert "used already" in reused["detail"]

        await _finished_with_a_backup_email(client, gateway, csrf, primary="totp")
        me = await _me(client)
        assert me["mfa"]["has_backup"] is True
        out = await client.delete(f"{API}/session", headers=_csrf(me["csrf_token"]))
        assert out.status == 204

        # Signing in again: "use my backup method" over JSON.
        state = await _sign_in(client, "ava@harbour.example")
        assert state["next"] == "challenge"
        csrf = state["csrf_token"]
        status, sent = await _post(client, "mfa/challenge/send", csrf, {"method": "backup"})
        assert status == 200, sent
        assert sent["sent_to"] == "a•••@harbour.example"
        code = _mailed_code(mailbox, BACKUP)
        status, passed = await _post(
            client, "mfa/challenge", csrf, {"method": "backup", "code": code}
        )
        assert status == 200, passed
        assert passed["method"] == "email"
        assert passed["mfa_verified"] is True
        me = await _me(client)
        assert me["mfa"]["method"] == "email"
        whoami = await (await client.get("/api/whoami")).json()
        headers = {k.lower(): v for k, v in whoami["headers"].items()}
        assert headers["x-gateway-mfa"] == "verified"
        assert headers["x-gateway-mfa-method"] == "email"
        # The code was used once: a step-up with it again is refused.
        status, reused = await _post(
            client, "mfa/challenge", me["csrf_token"], {"method": "backup", "code": code}
        )
        assert status == 400
        assert reused["type"].endswith("/code-refused")
    kinds = [e.kind for e in await gateway.services.store.audit.list()]
    for kind in ("mfa.code_sent", "mfa.enrolled", "mfa.passed", "mfa.failed"):
        assert kind in kinds, kind


async def test_a_member_may_skip_the_backup_and_has_none_to_send_to(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, "max@harbour.example"))["csrf_token"]
        _, confirmed = await _confirm_app(client, gateway, csrf)
        assert confirmed["next_step"] == f"{API}/mfa/enrol/finish"
        assert confirmed["backup"] == "offered"
        status, finished = await _post(client, "mfa/enrol/finish", csrf)
        assert status == 201
        assert await _kinds(gateway, "max@harbour.example") == [("totp", "primary")]
        csrf = finished["csrf_token"]
        status, problem = await _post(client, "mfa/challenge/send", csrf, {"method": "backup"})
        assert status == 409
        assert problem["type"].endswith("/no-backup-factor")
        # The one send route, asked for a text message: no phone is set up to send it to.
        status, problem = await _post(client, "mfa/challenge/send", csrf, {"method": "sms"})
        assert status == 409
        assert problem["type"].endswith("/no-sms-factor")
        assert "No phone is set up" in problem["detail"]
        status, problem = await _post(
            client, "mfa/challenge", csrf, {"method": "backup", "code": "123456"}
        )
        assert status == 400
        assert problem["type"].endswith("/code-refused")


async def test_bad_backup_input_is_refused_clearly_and_saves_nothing(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    store = gateway.services.store
    async with gateway.client() as max_client:
        max_csrf = (await _sign_in(max_client, "max@harbour.example"))["csrf_token"]
        await _confirm_app(max_client, gateway, max_csrf)
        body = {"kind": "email", "destination": "max.backup@harbour.example"}
        assert (await _post(max_client, "mfa/enrol/backup", max_csrf, body))[0] == 200
        max_code = _mailed_code(mailbox, "max.backup@harbour.example")

    async with gateway.client() as client:
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        # The backup step before the app is confirmed (a step skipped).
        status, problem = await _post(
            client, "mfa/enrol/backup", csrf, {"kind": "email", "destination": BACKUP}
        )
        assert status == 409
        assert problem["type"].endswith("/step-missing")
        status, problem = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": "1"})
        assert status == 409
        await _confirm_app(client, gateway, csrf)

        for kind, typed, says in (
            ("sms", "1900 654 321", "Premium-rate"),
            ("sms", "0412 34", "not a valid phone number"),
            ("sms", "02 9374 4000", "not a mobile number"),
            ("email", "ava@@harbour", "email address"),
        ):
            status, problem = await _post(
                client, "mfa/enrol/backup", csrf, {"kind": kind, "destination": typed}
            )
            assert status == 400, (typed, problem)
            assert problem["type"].endswith("/bad-destination")
            assert says in problem["detail"], (typed, problem["detail"])
        for shape, field in (
            ({"kind": "pigeon", "destination": BACKUP}, "kind"),
            ({"kind": "email"}, "destination"),
            ({"kind": "email", "destination": "x" * 5000}, "destination"),
            ({"kind": "email", "destination": BACKUP, "extra": 1}, "extra"),
            ({"kind": "email", "destination": 4}, "destination"),
        ):
            status, problem = await _post(client, "mfa/enrol/backup", csrf, shape)
            assert status == 422, shape
            assert problem["errors"][0].startswith(field), problem
        for shape, field in (
            ({"method": "email"}, "method"),
            ({}, "method"),
            ({"method": "backup", "again": "yes"}, "again"),
        ):
            status, problem = await _post(client, "mfa/challenge/send", csrf, shape)
            assert status == 422, shape
            assert problem["errors"][0].startswith(field), problem

        # No code sent yet; then a code another user was sent; then a wrong one.
        status, problem = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": "1"})
        assert status == 400
        assert "Send a code first" in problem["detail"]
        body = {"kind": "email", "destination": BACKUP}
        assert (await _post(client, "mfa/enrol/backup", csrf, body))[0] == 200
        code = _mailed_code(mailbox, BACKUP)
        for wrong in (max_code, "000000", "abc"):
            if wrong == code:
                continue
            status, problem = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": wrong})
            assert status == 400
            assert problem["type"].endswith("/code-refused")
        # Without the CSRF token, or from another site: refused before anything is sent.
        sent_before = len(mailbox.received)
        for headers in (
            {},
            {**_csrf(csrf), "Sec-Fetch-Site": "cross-site"},
            {**_csrf(csrf), "Origin": "https://evil.example"},
        ):
            for path, payload in (
                ("mfa/enrol/backup", body),
                ("mfa/enrol/backup/confirm", {"code": code}),
                ("mfa/challenge/send", {"method": "backup"}),
            ):
                refused = await client.post(f"{API}/{path}", json=payload, headers=headers)
                assert refused.status == 403, (path, headers)
                assert refused.content_type == PROBLEM
        assert len(mailbox.received) == sent_before
        # The step ran out: the right code no longer proves anything.
        gateway.clock.advance(600)
        status, problem = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code})
        assert status == 409
        assert problem["type"].endswith("/step-expired")
        # The enrolment ran out with it: it starts again at the app.
        assert f"POST {API}/mfa/enrol/totp." in problem["detail"]
        assert problem["type"].endswith("/step-expired")
        assert await _kinds(gateway, "ava@harbour.example") == []
        user = await store.users.find_by_email("ava@harbour.example")
        assert user is not None
        pending = await store.factors.pending(user.id)
        assert pending is not None
        assert pending.backup_kind is None


async def test_a_backup_phone_by_sms_over_json_with_a_failed_send_that_spends_nothing(
    gateway: RunningGateway, provider: Provider
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        await _confirm_app(client, gateway, csrf)
        body = {"kind": "sms", "destination": "0412 345 678"}
        provider.status = 500
        status, problem = await _post(client, "mfa/enrol/backup", csrf, body)
        assert status == 503
        assert problem["type"].endswith("/send-failed")
        assert "Try again" in problem["detail"]
        provider.status = 201
        status, sent = await _post(client, "mfa/enrol/backup", csrf, body)
        assert status == 200
        assert sent["sent_to"] == "+61 ••• ••• 678"
        code = _texted_code(provider, "+61412345678")
        assert (await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code}))[0] == 200
        status, finished = await _post(client, "mfa/enrol/finish", csrf)
        assert status == 201
        assert await _kinds(gateway, "ava@harbour.example") == [
            ("sms", "backup"),
            ("totp", "primary"),
        ]
        # Sends at sign-in are limited per user: the limit answers 429 and says to wait.
        csrf = finished["csrf_token"]
        statuses = []
        for _ in range(6):
            response = await client.post(
                f"{API}/mfa/challenge/send", json={"method": "backup"}, headers=_csrf(csrf)
            )
            statuses.append(response.status)
            if response.status == 429:
                assert (await response.json())["type"].endswith("/send-limited")
                assert "Wait" in (await response.json())["detail"]
                assert int(response.headers["Retry-After"]) > 0
                break
        assert statuses[-1] == 429
        assert set(statuses[:-1]) == {200}


async def test_failed_backup_and_app_codes_count_together_towards_the_lockout(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    async with gateway.client() as client:
        totp, finished = await _enrolled_with_a_backup_email(client, gateway, mailbox)
        await client.delete(f"{API}/session", headers=_csrf(finished["csrf_token"]))
        gateway.clock.advance(30)

        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        await _post(client, "mfa/challenge/send", csrf, {"method": "backup"})
        backup_code = _mailed_code(mailbox, BACKUP)
        wrong_backup = "000000" if backup_code != "000000" else "111111"
        details = set()
        for method, wrong in (("backup", wrong_backup),) * 3 + (("totp", "000000"),) * 2:
            status, problem = await _post(
                client, "mfa/challenge", csrf, {"method": method, "code": wrong}
            )
            assert status == 400
            details.add(problem["detail"])
        # Five failures across both methods: even the right backup code is refused now.
        status, problem = await _post(
            client, "mfa/challenge", csrf, {"method": "backup", "code": backup_code}
        )
        assert status == 400
        details.add(problem["detail"])
        assert len(details) == 1
        assert "mfa.locked" in [e.kind for e in await gateway.services.store.audit.list()]
        gateway.clock.advance(15 * 60)
        status, passed = await _post(
            client, "mfa/challenge", csrf, {"method": "totp", "code": totp.at(gateway.clock())}
        )
        assert status == 200, passed


PHONE = "+61412345678"


async def _confirm_phone(
    client: aiohttp.ClientSession, provider: Provider, csrf: str
) -> dict[str, Any]:
    """Start text messages for 0412 345 678 and confirm the texted code; the answer."""
    status, started = await _post(client, "mfa/enrol/sms", csrf, {"phone": "0412 345 678"})
    assert status == 201, started
    assert started["next_step"] == f"{API}/mfa/enrol/sms/confirm"
    code = _texted_code(provider, PHONE)
    status, confirmed = await _post(client, "mfa/enrol/sms/confirm", csrf, {"code": code})
    assert status == 200, confirmed
    return confirmed


async def test_a_principal_enrols_over_json_with_text_messages_and_a_backup_email(
    gateway: RunningGateway, mailbox: Mailbox, provider: Provider
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        assert (await _me(client))["mfa"]["allowed_methods"] == ["sms", "totp"]
        confirmed = await _confirm_phone(client, provider, csrf)
        # The same answer as confirming an app: the backup is required for a principal.
        assert confirmed == {
            "next_step": f"{API}/mfa/enrol/backup",
            "backup": "required",
            "backup_kinds": ["sms", "email"],
        }
        status, problem = await _post(client, "mfa/enrol/finish", csrf)
        assert status == 409
        assert problem["type"].endswith("/backup-required")
        # The primary phone, however typed, cannot be the backup; nothing is sent to it.
        texted = len(provider.requests)
        for typed in ("+61 412 345 678", "0412345678"):
            status, problem = await _post(
                client, "mfa/enrol/backup", csrf, {"kind": "sms", "destination": typed}
            )
            assert status == 400, problem
            assert problem["type"].endswith("/bad-destination")
            assert "must differ from the number you use to sign in" in problem["detail"]
        assert len(provider.requests) == texted
        # A backup email, proved by the code the real SMTP server received.
        body = {"kind": "email", "destination": BACKUP}
        status, sent = await _post(client, "mfa/enrol/backup", csrf, body)
        assert status == 200, sent
        assert (sent["kind"], sent["sent_to"]) == ("email", "a•••@harbour.example")
        code = _mailed_code(mailbox, BACKUP)
        status, proved = await _post(client, "mfa/enrol/backup/confirm", csrf, {"code": code})
        assert status == 200, proved
        assert (proved["next_step"], proved["backup"]) == (f"{API}/mfa/enrol/finish", "proved")
        await _finished_with_a_backup_email(client, gateway, csrf, primary="sms")
        me = await _me(client)
        assert (me["mfa"]["methods"], me["mfa"]["has_backup"]) == (["sms"], True)
        await client.delete(f"{API}/session", headers=_csrf(me["csrf_token"]))

        # Signing in again: one route sends the code by either method.
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        status, sent = await _post(client, "mfa/challenge/send", csrf, {"method": "sms"})
        assert status == 200, sent
        assert (sent["kind"], sent["sent_to"]) == ("sms", "+61 ••• ••• 678")
        texted_code = _texted_code(provider, PHONE)
        status, sent = await _post(client, "mfa/challenge/send", csrf, {"method": "backup"})
        assert status == 200, sent
        assert (sent["kind"], sent["sent_to"]) == ("email", "a•••@harbour.example")
        status, passed = await _post(
            client, "mfa/challenge", csrf, {"method": "sms", "code": texted_code}
        )
        assert status == 200, passed
        assert passed["method"] == "sms"


async def test_a_phone_enrolment_left_too_long_over_json_starts_again_at_the_phone(
    gateway: RunningGateway, mailbox: Mailbox, provider: Provider
) -> None:
    async with gateway.client() as client:
        csrf = (await _sign_in(client, "ava@harbour.example"))["csrf_token"]
        await _confirm_phone(client, provider, csrf)
        gateway.clock.advance(600)
        body = {"kind": "email", "destination": BACKUP}
        for path, payload in (("mfa/enrol/backup", body), ("mfa/enrol/finish", None)):
            status, problem = await _post(client, path, csrf, payload)
            assert status == 409, (path, problem)
            assert problem["type"].endswith("/step-expired")
            assert problem["detail"].endswith(f"Start setting up again: POST {API}/mfa/enrol/sms.")
            assert "Scan" not in problem["detail"]
        assert mailbox.received == []
        await _confirm_phone(client, provider, csrf)  # started again, it goes on
