"""The 2FA pages over HTTP against a real gateway: bad input gets a clear answer and saves
nothing, steps cannot be skipped, a device cookie counts only for its user, step-up asks again
when the last check is too old, and enrolled users outside every policy are challenged too."""

from __future__ import annotations

import html
import re

import aiohttp
import pyotp
import pytest

from gateway.http.redirects import safe_next
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in

HTML = {"Accept": "text/html"}
KEY = re.compile(r'id="totp-key" class="key">([A-Z2-7 ]+)<')
CODES = re.compile(r"<li><code>([0-9a-z]{5}-[0-9a-z]{5})</code></li>")
SENT_CODE = re.compile(r"\b([0-9]{6,8})\b")
BACKUP_EMAIL = "ava.backup@harbour.example"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(
        policies=True, email={"driver": "log"}, sms={"driver": "log"}
    )
    return running


def _last_code(gateway: RunningGateway) -> str:
    """The code in the newest message the demo outbox kept."""
    outbox = gateway.services.sending.outbox
    assert outbox is not None
    assert outbox.messages
    match = SENT_CODE.search(outbox.messages[0].body)
    assert match, outbox.messages[0].body
    return match.group(1)


async def _csrf(client: aiohttp.ClientSession, path: str) -> str:
    page = await client.get(path, headers=HTML, allow_redirects=False)
    assert page.status == 200, (path, page.status)
    match = CSRF_FIELD.search(await page.text())
    assert match, path
    return match.group(1)


async def _enrol(
    client: aiohttp.ClientSession,
    gateway: RunningGateway,
    next_target: str = "/",
    *,
    backup: str | None = BACKUP_EMAIL,
) -> tuple[pyotp.TOTP, list[str]]:
    """Enrol an authenticator app, then add ``backup`` as a backup email (or skip it)."""
    csrf = await _csrf(client, "/_gateway/mfa/enrol")
    started = await client.post(
        "/_gateway/mfa/enrol/totp", data={"csrf": csrf, "next": next_target}, allow_redirects=False
    )
    assert started.status == 303
    page = await client.get(started.headers["Location"], headers=HTML)
    text = await page.text()
    match = KEY.search(text)
    assert match, text
    totp = pyotp.TOTP(match.group(1).replace(" ", ""))
    csrf_match = CSRF_FIELD.search(text)
    assert csrf_match
    done = await client.post(
        "/_gateway/mfa/enrol/totp/confirm",
        data={"csrf": csrf_match.group(1), "next": next_target, "code": totp.at(gateway.clock())},
    )
    assert done.status == 200
    step = {"csrf": csrf_match.group(1), "next": next_target}
    if 'id="send-backup-code"' not in await done.text():
        pass  # no policy offers a backup method: the set-up is done
    elif backup is None:
        done = await client.post("/_gateway/mfa/enrol/finish", data=step)
    else:
        sent = await client.post(
            "/_gateway/mfa/enrol/backup", data={**step, "kind": "email", "destination": backup}
        )
        assert sent.status == 200, await sent.text()
        done = await client.post(
            "/_gateway/mfa/enrol/backup/confirm",
            data={**step, "kind": "email", "destination": backup, "code": _last_code(gateway)},
        )
    assert done.status == 200
    assert done.headers["Cache-Control"] == "no-store"
    text = await done.text()
    # The only way on is the page first asked for (if it was a same-origin path).
    assert f'<a href="{html.escape(safe_next(next_target))}" id="continue"' in text
    return totp, CODES.findall(text)


async def _user_id(gateway: RunningGateway, email: str) -> str:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user.id


async def test_forged_and_skipped_steps_save_nothing(gateway: RunningGateway) -> None:
    store = gateway.services.store
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        user_id = await _user_id(gateway, "max@harbour.example")
        forged = await client.post("/_gateway/mfa/enrol/totp", data={"next": "/"}, headers=HTML)
        assert forged.status == 403
        assert await store.factors.pending(user_id) is None
        # Typing the URL of a later step before starting the first.
        skipped = await client.get("/_gateway/mfa/enrol/totp", headers=HTML)
        assert skipped.status == 409
        assert "has not been started" in await skipped.text()
        csrf = await _csrf(client, "/_gateway/mfa/enrol")
        confirm = await client.post(
            "/_gateway/mfa/enrol/totp/confirm", data={"csrf": csrf, "code": "123456"}
        )
        assert confirm.status == 409
        assert "has not been started" in await confirm.text()
        # Started, then a wrong code, an empty code and a huge one: the same clear message.
        await client.post("/_gateway/mfa/enrol/totp", data={"csrf": csrf, "next": "/"})
        for code in ("000000", "", "9" * 5000, "abc\x00"):
            wrong = await client.post(
                "/_gateway/mfa/enrol/totp/confirm", data={"csrf": csrf, "code": code}
            )
            assert wrong.status == 400
            assert "That code was not accepted" in html.unescape(await wrong.text())
        assert await store.factors.kinds(user_id) == []
        assert await store.factors.unused_recovery_digests(user_id) == []


async def test_a_step_left_too_long_starts_over_with_a_new_key(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        csrf = await _csrf(client, "/_gateway/mfa/enrol")
        await client.post("/_gateway/mfa/enrol/totp", data={"csrf": csrf, "next": "/a?b=1"})
        first = await client.get("/_gateway/mfa/enrol/totp", headers=HTML)
        match = KEY.search(await first.text())
        assert match
        old = pyotp.TOTP(match.group(1).replace(" ", ""))
        gateway.clock.advance(600)
        late = await client.post(
            "/_gateway/mfa/enrol/totp/confirm",
            data={"csrf": csrf, "code": old.at(gateway.clock()), "next": "/a?b=1"},
        )
        assert late.status == 409
        text = html.unescape(await late.text())
        assert text.count("took longer than 10 minutes") == 1
        renewed = KEY.search(text)
        assert renewed
        assert renewed.group(1) != match.group(1)
        assert 'value="/a?b=1"' in text
        user_id = await _user_id(gateway, "max@harbour.example")
        assert await gateway.services.store.factors.kinds(user_id) == []


async def test_enrolment_lands_on_the_page_first_asked_for_and_not_elsewhere(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        _, codes = await _enrol(client, gateway, next_target="//evil.example/x")
        assert len(codes) == 10
        assert (await client.get("/api/whoami")).status == 200
    async with gateway.client() as client:
        await sign_in(client, email="ava@harbour.example")
        csrf = await _csrf(client, "/_gateway/mfa/enrol")
        await client.post("/_gateway/mfa/enrol/totp", data={"csrf": csrf})
        page = await client.get("/_gateway/mfa/enrol/totp", headers=HTML)
        assert "evil.example" not in await page.text()


async def test_the_app_learns_how_and_when_and_cannot_be_told_otherwise(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        await _enrol(client, gateway)
        forged = {"X-Gateway-Mfa-Method": "device", "x_gateway_mfa_at": "1"}
        body = await (await client.get("/api/whoami", headers=forged)).json()
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers["x-gateway-mfa"] == "verified"
    assert headers["x-gateway-mfa-method"] == "totp"
    assert headers["x-gateway-mfa-at"] == str(int(gateway.clock()))
    assert "x_gateway_mfa_at" not in headers


async def test_another_users_device_cookie_does_not_skip_the_challenge(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as ava:
        await sign_in(ava, email="ava@harbour.example")
        totp, _ = await _enrol(ava, gateway)
        await ava.post("/_gateway/logout", data={"csrf": await _csrf(ava, "/_gateway/logout")})
        gateway.clock.advance(30)
        await sign_in(ava, email="ava@harbour.example")
        csrf = await _csrf(ava, "/_gateway/mfa/verify")
        verified = await ava.post(
            "/_gateway/mfa/verify",
            data={"csrf": csrf, "code": totp.at(gateway.clock()), "remember": "1", "next": "/"},
            allow_redirects=False,
        )
        assert verified.status == 303
        device = verified.cookies["gw-mfa-device"]
        assert device["httponly"]
        assert device["samesite"] == "Lax"
        assert int(device["max-age"]) == 23 * 3600
        token = device.value
    async with gateway.client() as max_client:
        await sign_in(max_client, email="max@harbour.example")
        await _enrol(max_client, gateway)
        await max_client.post(
            "/_gateway/logout", data={"csrf": await _csrf(max_client, "/_gateway/logout")}
        )
        max_client.cookie_jar.update_cookies({"gw-mfa-device": token}, gateway.url)
        signed_in = await sign_in(max_client, email="max@harbour.example")
        assert signed_in.cookies["gw-mfa-device"].value == ""  # cleared
        held = await max_client.get("/", headers=HTML, allow_redirects=False)
        assert held.status == 302
        assert held.headers["Location"].startswith("/_gateway/mfa/verify")
    # The owner's browser is still remembered.
    async with gateway.client() as ava:
        ava.cookie_jar.update_cookies({"gw-mfa-device": token}, gateway.url)
        await sign_in(ava, email="ava@harbour.example")
        body = await (await ava.get("/api/whoami")).json()
        assert body["headers"]["X-Gateway-Mfa-Method"] == "device"
        passed = [e for e in await gateway.services.store.audit.list() if e.kind == "mfa.passed"]
        assert [e.detail["method"] for e in passed][-1] == "device"
        # Let in by the device, not by a code: a step-up still asks for a code.
        step_up = await ava.get(
            "/_gateway/mfa/verify?next=/pay&max_age=300", headers=HTML, allow_redirects=False
        )
        assert step_up.status == 200
        assert "confirm it's you again" in html.unescape(await step_up.text())
        # Past the window (and the session's own life), it no longer counts.
        gateway.clock.advance(23 * 3600)
        await sign_in(ava, email="ava@harbour.example")
        held = await ava.get("/", headers=HTML, allow_redirects=False)
        assert held.headers["Location"].startswith("/_gateway/mfa/verify")


async def test_step_up_asks_again_when_the_last_check_is_too_old(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        totp, _ = await _enrol(client, gateway)
        fresh = await client.get(
            "/_gateway/mfa/verify?next=/pay&max_age=300", headers=HTML, allow_redirects=False
        )
        assert fresh.status == 303
        assert fresh.headers["Location"] == "/pay"
        gateway.clock.advance(301)
        for query in ("next=/pay&max_age=300", "next=/pay&max_age=-5", "next=/pay&max_age=x"):
            page = await client.get(f"/_gateway/mfa/verify?{query}", headers=HTML)
            assert page.status == 200
            text = html.unescape(await page.text())
            assert "confirm it's you again" in text
            assert "Don't ask again" not in text
        csrf = await _csrf(client, "/_gateway/mfa/verify?next=/pay&max_age=300")
        passed = await client.post(
            "/_gateway/mfa/verify",
            data={"csrf": csrf, "code": totp.at(gateway.clock()), "next": "/pay", "max_age": "300"},
            allow_redirects=False,
        )
        assert passed.status == 303
        assert passed.headers["Location"] == "/pay"
        # The same post again (a replay) is refused: the session and its form tokens are new.
        replayed = await client.post(
            "/_gateway/mfa/verify",
            data={"csrf": csrf, "code": totp.at(gateway.clock()), "next": "/pay"},
            allow_redirects=False,
        )
        assert replayed.status == 403
        body = await (await client.get("/api/whoami")).json()
        assert body["headers"]["X-Gateway-Mfa-At"] == str(int(gateway.clock()))


async def test_an_enrolled_user_outside_every_policy_is_challenged(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="nia@kauri.example")
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 200
        # Not enrolled: a step-up sends to set-up first.
        step_up = await client.get(
            "/_gateway/mfa/verify?next=/", headers=HTML, allow_redirects=False
        )
        assert step_up.headers["Location"].startswith("/_gateway/mfa/enrol")
        await _enrol(client, gateway)
    async with gateway.client() as client:
        await sign_in(client, email="nia@kauri.example")
        held = await client.get("/", headers=HTML, allow_redirects=False)
        assert held.status == 302
        assert held.headers["Location"].startswith("/_gateway/mfa/verify")
        api = await client.get("/api/whoami", headers={"Accept": "application/json"})
        assert api.status == 403
        assert (await api.json())["verify_url"] == "/_gateway/mfa/verify"


async def _to_backup_step(client: aiohttp.ClientSession, gateway: RunningGateway) -> str:
    """Start and confirm an authenticator app; the backup page's CSRF token."""
    csrf = await _csrf(client, "/_gateway/mfa/enrol")
    await client.post("/_gateway/mfa/enrol/totp", data={"csrf": csrf, "next": "/"})
    page = await client.get("/_gateway/mfa/enrol/totp", headers=HTML)
    match = KEY.search(await page.text())
    assert match
    totp = pyotp.TOTP(match.group(1).replace(" ", ""))
    done = await client.post(
        "/_gateway/mfa/enrol/totp/confirm",
        data={"csrf": csrf, "next": "/", "code": totp.at(gateway.clock())},
        allow_redirects=False,
    )
    assert done.status == 303
    assert done.headers["Location"].startswith("/_gateway/mfa/enrol/backup")
    return csrf


async def test_a_principal_cannot_skip_the_backup_and_bad_input_saves_nothing(
    gateway: RunningGateway,
) -> None:
    store = gateway.services.store
    async with gateway.client() as client:
        await sign_in(client, email="ava@harbour.example")
        user_id = await _user_id(gateway, "ava@harbour.example")
        # Typing the backup step's URL before the app is confirmed.
        skipped = await client.get("/_gateway/mfa/enrol/backup", headers=HTML)
        assert skipped.status == 409
        csrf = await _to_backup_step(client, gateway)
        page = await client.get("/_gateway/mfa/enrol/backup", headers=HTML)
        text = await page.text()
        assert "Your role needs one" in text
        assert 'id="skip-backup"' not in text
        forced = await client.post("/_gateway/mfa/enrol/finish", data={"csrf": csrf, "next": "/"})
        assert forced.status == 400
        assert "Your role needs a backup method" in await forced.text()
        forged = await client.post(
            "/_gateway/mfa/enrol/backup", data={"kind": "email", "destination": BACKUP_EMAIL}
        )
        assert forged.status == 403
        for kind, typed, says in (
            ("sms", "1900 654 321", "Premium-rate"),
            ("sms", "x" * 5000, "Enter a mobile number"),
            ("email", "ava@@harbour", "email address"),
        ):
            bad = await client.post(
                "/_gateway/mfa/enrol/backup",
                data={"csrf": csrf, "next": "/", "kind": kind, "destination": typed},
            )
            assert bad.status == 400
            assert says in html.unescape(await bad.text())
        await client.post(
            "/_gateway/mfa/enrol/backup",
            data={"csrf": csrf, "next": "/", "kind": "email", "destination": BACKUP_EMAIL},
        )
        wrong = await client.post(
            "/_gateway/mfa/enrol/backup/confirm",
            data={
                "csrf": csrf,
                "next": "/",
                "kind": "email",
                "destination": BACKUP_EMAIL,
                "code": "000000",
            },
        )
        assert wrong.status == 400
        text = html.unescape(await wrong.text())
        assert "That code was not accepted" in text
        assert 'id="send-again"' in text  # the code form stays, with "send a new code"
        assert await store.factors.kinds(user_id) == []
        gateway.clock.advance(600)
        late = await client.post(
            "/_gateway/mfa/enrol/backup/confirm",
            data={"csrf": csrf, "next": "/", "code": _last_code(gateway)},
        )
        assert late.status == 409
        assert "took longer than 10 minutes" in html.unescape(await late.text())
        assert await store.factors.kinds(user_id) == []


async def test_a_principal_with_a_backup_email_is_enrolled_and_verified(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="ava@harbour.example")
        await _enrol(client, gateway)
        body = await (await client.get("/api/whoami")).json()
    headers = {k.lower(): v for k, v in body["headers"].items()}
    assert headers["x-gateway-mfa"] == "verified"
    user_id = await _user_id(gateway, "ava@harbour.example")
    kinds = await gateway.services.store.factors.kinds(user_id)
    assert sorted(kinds) == [("email", "backup"), ("totp", "primary")]


async def test_a_member_may_skip_the_backup(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        _, codes = await _enrol(client, gateway, backup=None)
        assert len(codes) == 10
    user_id = await _user_id(gateway, "max@harbour.example")
    assert await gateway.services.store.factors.kinds(user_id) == [("totp", "primary")]


async def test_use_my_backup_method_sends_a_code_and_signs_in(gateway: RunningGateway) -> None:
    async with gateway.client() as ava:
        await sign_in(ava, email="ava@harbour.example")
        await _enrol(ava, gateway)
        await ava.post("/_gateway/logout", data={"csrf": await _csrf(ava, "/_gateway/logout")})
        await sign_in(ava, email="ava@harbour.example", next_target="/a?b=1")
        page = await ava.get("/_gateway/mfa/verify", params={"next": "/a?b=1"}, headers=HTML)
        text = await page.text()
        assert 'id="use-backup"' in text
        choose = re.search(r'href="([^"]+)" id="use-backup"', text)
        assert choose
        backup_page = await ava.get(html.unescape(choose.group(1)), headers=HTML)
        text = html.unescape(await backup_page.text())
        assert "Send a code to a•••@harbour.example" in text
        csrf_match = CSRF_FIELD.search(text)
        assert csrf_match
        csrf = csrf_match.group(1)
        # Forged: no code goes out.
        sent_before = len(gateway.services.sending.outbox.messages)  # type: ignore[union-attr]
        forged = await ava.post("/_gateway/mfa/verify/send", data={"next": "/"})
        assert forged.status == 403
        assert len(gateway.services.sending.outbox.messages) == sent_before  # type: ignore[union-attr]
        sent = await ava.post("/_gateway/mfa/verify/send", data={"csrf": csrf, "next": "/a?b=1"})
        assert sent.status == 200
        assert "We sent a code to a•••@harbour.example" in html.unescape(await sent.text())
        code = _last_code(gateway)
        wrong = await ava.post(
            "/_gateway/mfa/verify",
            data={"csrf": csrf, "method": "backup", "code": "000000", "next": "/a?b=1"},
        )
        assert wrong.status == 400
        assert "That code was not accepted" in html.unescape(await wrong.text())
        verified = await ava.post(
            "/_gateway/mfa/verify",
            data={"csrf": csrf, "method": "backup", "code": code, "next": "/a?b=1"},
            allow_redirects=False,
        )
        assert verified.status == 303
        assert verified.headers["Location"] == "/a?b=1"
        body = await (await ava.get("/api/whoami")).json()
        assert body["headers"]["X-Gateway-Mfa-Method"] == "email"
        # "Send again" is limited: five codes in 15 minutes (with the two sent while
        # enrolling and signing in), then the page says to wait.
        gateway.clock.advance(1)  # a step-up asking for a check newer than the last
        csrf = await _csrf(ava, "/_gateway/mfa/verify?method=backup&max_age=0")
        statuses = []
        for _ in range(4):
            again = await ava.post(
                "/_gateway/mfa/verify/send", data={"csrf": csrf, "next": "/", "max_age": "0"}
            )
            statuses.append(again.status)
        assert statuses == [200, 200, 200, 429]
        assert "You have asked for too many codes. Wait" in await again.text()


async def test_without_a_backup_there_is_no_backup_to_use(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="max@harbour.example")
        await _enrol(client, gateway, backup=None)
        await client.post(
            "/_gateway/logout", data={"csrf": await _csrf(client, "/_gateway/logout")}
        )
        await sign_in(client, email="max@harbour.example")
        page = await client.get("/_gateway/mfa/verify?method=backup", headers=HTML)
        text = await page.text()
        assert 'id="use-backup"' not in text
        assert "Code from your authenticator app" in text
        csrf_match = CSRF_FIELD.search(text)
        assert csrf_match
        refused = await client.post(
            "/_gateway/mfa/verify/send", data={"csrf": csrf_match.group(1), "next": "/"}
        )
        assert refused.status == 400
        assert "No backup method is set up" in await refused.text()


async def test_the_issuer_authenticator_apps_show_is_configurable(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(
        policies=True, security={"totp_issuer": "Harbour Books & Co"}
    )
    async with gateway.client() as max_:
        await sign_in(max_, email="max@harbour.example")
        csrf = await _csrf(max_, "/_gateway/mfa/enrol")
        await max_.post("/_gateway/mfa/enrol/totp", data={"csrf": csrf, "next": "/"})
        page = html.unescape(
            await (await max_.get("/_gateway/mfa/enrol/totp", headers=HTML)).text()
        )
    assert 'id="totp-issuer">Harbour Books & Co<' in page
    link = re.search(r'href="(otpauth://[^"]+)" id="totp-link"', page)
    assert link is not None
    assert "issuer=Harbour%20Books%20%26%20Co" in link.group(1)
    assert link.group(1).startswith("otpauth://totp/Harbour%20Books%20%26%20Co:")
