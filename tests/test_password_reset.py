"""Forgotten and changed passwords against a real gateway on loopback, a real SQLite file and a
real SMTP server: the emailed link works once, for 15 minutes, for its own user only, and a
reset never bypasses 2FA; a change needs the current password and a fresh second factor."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
from email import message_from_bytes
from email.policy import default
from typing import Any

import aiohttp
from yarl import URL

from gateway.accounts.password_resets import ResetRefused, judge_link
from gateway.runtime.background import follow_other_processes, housekeep
from gateway.sandbox.demo import DEMO_PASSWORD
from gateway.store import ResetLink
from gateway.web.password_flows import resets_for
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway, sign_in
from tests.stand_ins import Mailbox
from tests.test_browser_mfa import smtp_section
from tests.test_user_api import API, _csrf, _enrol, _sign_in

AVA, MAX = "ava@harbour.example", "max@harbour.example"
NEW_PASSWORD = "a brand new passphrase 2026"
LINK = re.compile(r"(http://\S+/_gateway/password/reset\?token=[A-Za-z0-9_-]+)")
FORGOT_SENT = "If an account uses that address"
COOKIE = "gw-session"
HTML = {"Accept": "text/html"}


async def _gateway(make_gateway: GatewayFactory, mailbox: Mailbox, **sections: Any) -> Any:
    return await make_gateway(policies=True, email=smtp_section(mailbox), **sections)


async def _form_csrf(client: aiohttp.ClientSession, path: str) -> str:
    page = await client.get(path, allow_redirects=False)
    assert page.status == 200, await page.text()
    match = CSRF_FIELD.search(await page.text())
    assert match, f"{path} has no CSRF field"
    return match.group(1)


async def _forgot(
    client: aiohttp.ClientSession, gateway: RunningGateway, email: str
) -> aiohttp.ClientResponse:
    """Ask for a link on the page, and let the send (after the answer) finish."""
    csrf = await _form_csrf(client, "/_gateway/password/forgot")
    response = await client.post(
        "/_gateway/password/forgot", data={"email": email, "csrf": csrf}, allow_redirects=False
    )
    await response.read()
    await gateway.services.sending.settle()
    return response


def _mails(box: Mailbox, to: str) -> list[Any]:
    mails = [message_from_bytes(raw, policy=default) for raw in box.received]
    return [mail for mail in mails if mail["To"] == to]


def _link(box: Mailbox, to: str) -> URL:
    """The reset link in the newest email to ``to``, as the path and query to open."""
    mails = [m for m in _mails(box, to) if m["Subject"] == "Reset your password"]
    assert mails, f"no reset email to {to}"
    match = LINK.search(mails[-1].get_body().get_content())
    assert match is not None
    return URL(match.group(1))


async def _open_link(client: aiohttp.ClientSession, link: URL) -> aiohttp.ClientResponse:
    """Open the link: the token leaves the address at once, and the form comes next."""
    moved = await client.get(link.path_qs, allow_redirects=False)
    assert moved.status == 303
    assert moved.headers["Location"] == "/_gateway/password/reset"
    assert moved.headers["Referrer-Policy"] == "no-referrer"
    page = await client.get("/_gateway/password/reset", allow_redirects=False)
    await page.read()
    return page


async def _set_password(
    client: aiohttp.ClientSession, link: URL, password: str = NEW_PASSWORD
) -> aiohttp.ClientResponse:
    page = await _open_link(client, link)
    assert page.status == 200, await page.text()
    assert page.headers["Referrer-Policy"] == "no-referrer"
    match = CSRF_FIELD.search(await page.text())
    assert match
    response = await client.post(
        "/_gateway/password/reset",
        data={"csrf": match.group(1), "password": password, "confirm": password},
        allow_redirects=False,
    )
    await response.read()
    return response


async def _signed_in(client: aiohttp.ClientSession) -> bool:
    response = await client.get("/", headers=HTML, allow_redirects=False)
    return response.status != 302 or "/_gateway/login" not in response.headers["Location"]


async def _audit_text(gateway: RunningGateway) -> str:
    events = await gateway.services.store.audit.list()
    return json.dumps([(e.kind, e.subject, e.detail) for e in events])


async def test_a_link_sets_a_new_password_once_and_ends_every_session(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as signed, gateway.client() as other:
        assert (await sign_in(signed, email=MAX)).status == 303
        assert await _signed_in(signed)
        answered = await _forgot(other, gateway, MAX)
        assert answered.status == 200
        assert FORGOT_SENT in await answered.text()
        link = _link(mailbox, MAX)
        assert (link.host, link.port) == (gateway.url.host, gateway.url.port)
        assert len(link.query["token"]) >= 43  # 256 bits, base64url
        done = await _set_password(other, link)
        assert done.status == 303
        assert done.headers["Location"] == "/_gateway/login?password=reset"
        assert COOKIE not in {c.key for c in other.cookie_jar if c.value}
        # The session signed in before is over; the old password no longer works.
        assert not await _signed_in(signed)
        assert (await sign_in(signed, email=MAX)).status == 401
        assert (await sign_in(signed, email=MAX, password=NEW_PASSWORD)).status == 303
        # The link is spent.
        again = await _open_link(other, link)
        assert again.status == 400
        assert "used already" in await again.text()
    notices = [m for m in _mails(mailbox, MAX) if m["Subject"] == "Your password was changed"]
    assert len(notices) == 1
    kinds = [e.kind for e in await gateway.services.store.audit.list()]
    assert {"password.reset_requested", "password.reset_sent", "password.reset"} <= set(kinds)
    assert "password.reset_refused" in kinds
    text = await _audit_text(gateway)
    assert link.query["token"] not in text
    assert NEW_PASSWORD not in text


async def test_a_reset_never_skips_the_second_factor(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        state = await _sign_in(client, MAX)
        totp, _ = await _enrol(client, gateway, state["csrf_token"])
    async with gateway.client() as client:
        await _forgot(client, gateway, MAX)
        assert (await _set_password(client, _link(mailbox, MAX))).status == 303
        signed = await client.post(f"{API}/session", json={"email": MAX, "password": NEW_PASSWORD})
        assert signed.status == 200
        assert (await signed.json())["next"] == "challenge"
        gateway.clock.advance(30)
        passed = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf((await signed.json())["csrf_token"]),
        )
        assert passed.status == 200, await passed.text()


async def test_an_unknown_address_gets_the_same_answer_and_no_mail(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        known = await _forgot(client, gateway, MAX)
        unknown = await _forgot(client, gateway, "nobody@harbour.example")
        assert (known.status, unknown.status) == (200, 200)
        strip = re.compile(r'name="csrf" value="[^"]+"|value="[^"]*@[^"]*"')
        assert strip.sub("", await known.text()) == strip.sub("", await unknown.text())
        answers = []
        for email in (MAX, "nobody@harbour.example"):
            response = await client.post(f"{API}/password/forgot", json={"email": email})
            answers.append((response.status, await response.json()))
        assert answers[0] == answers[1]
        assert answers[0][0] == 202
    await gateway.services.sending.settle()
    assert all(m["To"] == MAX for m in _mails(mailbox, MAX))
    assert len(mailbox.received) == 2  # both for Max; none for the unknown address
    requested = await gateway.services.store.audit.list(kind="password.reset_requested")
    assert [e.subject for e in requested].count(None) == 2


async def test_asking_is_limited_per_address_and_per_client(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        for email in ("nobody@harbour.example", MAX):
            statuses = [(await _forgot(client, gateway, email)).status for _ in range(4)]
            assert statuses == [200, 200, 200, 429]
        assert len(mailbox.received) == 3
        over = await client.post(f"{API}/password/forgot", json={"email": MAX})
        assert over.status == 429
        assert int(over.headers["Retry-After"]) > 0
        # Other addresses from the same client: ten requests in all, then none.
        statuses = [
            (await _forgot(client, gateway, f"x{n}@harbour.example")).status for n in range(6)
        ]
        assert statuses == [200, 200, 200, 200, 429, 429]
        # The window passes.
        gateway.clock.advance(901)
        assert (await _forgot(client, gateway, MAX)).status == 200
    assert len(await gateway.services.store.audit.list(kind="password.reset_throttled")) == 5


async def test_expired_forged_replaced_and_other_users_links_are_refused(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        await _forgot(client, gateway, MAX)
        first = _link(mailbox, MAX)
        await _forgot(client, gateway, MAX)
        second = _link(mailbox, MAX)
        assert first != second
        page = await _open_link(client, first)
        assert page.status == 400
        assert "newer reset link" in await page.text()
        forged = first.with_query(token=secrets.token_urlsafe(32))
        page = await _open_link(client, forged)
        assert page.status == 400
        assert "not valid" in await page.text()
        gateway.clock.advance(15 * 60)
        page = await _open_link(client, second)
        assert page.status == 400
        assert "expired" in await page.text()
        # Over JSON: Max's link sets Max's password, never anyone else's.
        await _forgot(client, gateway, MAX)
        token = _link(mailbox, MAX).query["token"]
        for body, slug in (
            ({"token": first.query["token"], "password": NEW_PASSWORD}, "link-refused"),
            ({"token": token, "password": "short"}, "weak-password"),
        ):
            refused = await client.post(f"{API}/password/reset", json=body)
            assert refused.status == 400
            assert (await refused.json())["type"].endswith(f"/{slug}")
        done = await client.post(
            f"{API}/password/reset", json={"token": token, "password": NEW_PASSWORD}
        )
        assert done.status == 200, await done.text()
        assert COOKIE not in {c.key for c in client.cookie_jar}
        for email, password in ((AVA, DEMO_PASSWORD), (MAX, NEW_PASSWORD)):
            async with gateway.client() as fresh:
                assert (await sign_in(fresh, email=email, password=password)).status == 303
        reused = await client.post(
            f"{API}/password/reset", json={"token": token, "password": "yet another one 2026"}
        )
        assert reused.status == 400
        assert "used already" in (await reused.json())["detail"]
    reasons = [
        e.detail["reason"]
        for e in await gateway.services.store.audit.list(kind="password.reset_refused")
    ]
    assert reasons == ["replaced", "unknown", "expired", "replaced", "used"]
    text = await _audit_text(gateway)
    assert token not in text
    assert NEW_PASSWORD not in text


async def test_a_failed_send_is_audited_and_its_link_retired(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    closed = smtp_section(mailbox) | {"port": 1}  # nothing listens there
    gateway = await make_gateway(email=closed)
    async with gateway.client() as client:
        assert (await _forgot(client, gateway, MAX)).status == 200
    failed = await gateway.services.store.audit.list(kind="password.reset_send_failed")
    assert len(failed) == 1
    assert failed[0].detail["to"] != MAX  # masked
    rows = await gateway.services.store.db.fetch_all("SELECT retired_at FROM password_resets")
    assert [row["retired_at"] is not None for row in rows] == [True]


async def test_housekeeping_forgets_dead_links(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        await _forgot(client, gateway, MAX)
    count = "SELECT count(*) AS n FROM password_resets"
    await housekeep(gateway.services)
    assert (await gateway.services.store.db.fetch_one(count) or {"n": 0})["n"] == 1
    gateway.clock.advance(15 * 60 + 24 * 3600)
    await housekeep(gateway.services)
    assert (await gateway.services.store.db.fetch_one(count) or {"n": 1})["n"] == 0
    assert await gateway.services.store.throttle.get("reset:client:127.0.0.1") is None


# Changing the password while signed in


async def _change_form(client: aiohttp.ClientSession) -> str:
    return await _form_csrf(client, "/_gateway/password/change")


async def _change(
    client: aiohttp.ClientSession, csrf: str, current: str, new: str = NEW_PASSWORD
) -> aiohttp.ClientResponse:
    response = await client.post(
        "/_gateway/password/change",
        data={"csrf": csrf, "current": current, "password": new, "confirm": new},
        allow_redirects=False,
    )
    await response.read()
    return response


async def test_a_change_needs_the_current_password_and_ends_other_sessions_everywhere(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    a = await _gateway(make_gateway, mailbox)
    b = await _gateway(make_gateway, mailbox)  # another process on the same SQLite file
    async with a.client() as client, a.client() as other, b.client() as elsewhere:
        for browser in (client, other):
            assert (await sign_in(browser, email=MAX)).status == 303
        assert (await sign_in(elsewhere, email=MAX)).status == 303
        assert await _signed_in(elsewhere)  # b has it cached
        csrf = await _change_form(client)
        wrong = await _change(client, csrf, "not my password at all")
        assert wrong.status == 400
        assert "current password is not right" in await wrong.text()
        short = await _change(client, csrf, DEMO_PASSWORD, "short")
        assert short.status == 400
        changed = await _change(client, csrf, DEMO_PASSWORD)
        assert changed.status == 200
        assert "Your password was changed" in await changed.text()
        # This browser stays signed in, under a new id; the others are signed out.
        assert await _signed_in(client)
        assert not await _signed_in(other)
        await follow_other_processes(b.services)
        assert not await _signed_in(elsewhere)
        assert (await sign_in(other, email=MAX, password=NEW_PASSWORD)).status == 303
    events = await a.services.store.audit.list(kind="password.changed")
    assert [e.detail["sessions_ended"] for e in events] == [2]
    failed = await a.services.store.audit.list(kind="password.change_failed")
    assert [e.detail["reason"] for e in failed] == ["wrong-password"]
    notices = [m for m in _mails(mailbox, MAX) if m["Subject"] == "Your password was changed"]
    assert len(notices) == 1
    assert NEW_PASSWORD not in await _audit_text(a)


async def test_a_change_asks_an_enrolled_user_for_a_fresh_second_factor(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        state = await _sign_in(client, MAX)
        totp, _ = await _enrol(client, gateway, state["csrf_token"])
        me = await (await client.get(f"{API}/me")).json()
        # Just enrolled: fresh enough. Five minutes on, not any more.
        gateway.clock.advance(301)
        page = await client.get("/_gateway/password/change", allow_redirects=False)
        assert page.status == 303
        step_up = URL(page.headers["Location"])
        assert step_up.path == "/_gateway/mfa/verify"
        assert step_up.query["max_age"] == "300"
        assert step_up.query["next"] == "/_gateway/password/change"
        body = {"current_password": DEMO_PASSWORD, "password": NEW_PASSWORD}
        refused = await client.post(
            f"{API}/password/change", json=body, headers=_csrf(me["csrf_token"])
        )
        assert refused.status == 403
        problem = await refused.json()
        assert problem["type"].endswith("/step-up-required")
        assert URL(problem["step_up_url"]).query == step_up.query
        assert "/_gateway/mfa/verify" in problem["detail"]
        # The page's form is sent on to the same step-up, and nothing changes.
        posted = await _change(client, me["csrf_token"], DEMO_PASSWORD)
        assert posted.status == 303
        assert URL(posted.headers["Location"]) == step_up
        passed = await client.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf(me["csrf_token"]),
        )
        assert passed.status == 200, await passed.text()
        csrf = (await (await client.get(f"{API}/me")).json())["csrf_token"]
        changed = await client.post(f"{API}/password/change", json=body, headers=_csrf(csrf))
        assert changed.status == 200, await changed.text()
        new_csrf = (await changed.json())["csrf_token"]
        assert new_csrf != csrf
        assert (await client.get(f"{API}/me")).status == 200  # the new id is set
    async with gateway.client() as client:
        assert (await sign_in(client, email=MAX)).status == 401


async def test_json_calls_refuse_bad_bodies_missing_csrf_and_other_sites(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        for path, body in (
            ("password/forgot", {}),
            ("password/forgot", {"email": "x" * 400}),
            ("password/forgot", {"email": MAX, "extra": 1}),
            ("password/reset", {"token": "t"}),
            ("password/reset", {"token": "t" * 200, "password": NEW_PASSWORD}),
        ):
            response = await client.post(f"{API}/{path}", json=body)
            assert response.status == 422, (path, body)
        text = await client.post(f"{API}/password/forgot", data="email=x")
        assert text.status == 415
        cross = await client.post(
            f"{API}/password/forgot", json={"email": MAX}, headers={"Sec-Fetch-Site": "cross-site"}
        )
        assert cross.status == 403
        assert (await cross.json())["type"].endswith("/cross-site")
        anonymous = await client.post(
            f"{API}/password/change",
            json={"current_password": DEMO_PASSWORD, "password": NEW_PASSWORD},
        )
        assert anonymous.status == 401
        state = await _sign_in(client, MAX)
        body = {"current_password": DEMO_PASSWORD, "password": NEW_PASSWORD}
        missing = await client.post(f"{API}/password/change", json=body)
        assert missing.status == 403
        assert (await missing.json())["type"].endswith("/csrf-failed")
        cross = await client.post(
            f"{API}/password/change",
            json=body,
            headers={**_csrf(state["csrf_token"]), "Origin": "https://evil.example"},
        )
        assert cross.status == 403
        shapes = await client.post(
            f"{API}/password/change", json={"password": 1}, headers=_csrf(state["csrf_token"])
        )
        assert shapes.status == 422
        wrong = await client.post(
            f"{API}/password/change",
            json={"current_password": "nope nope nope", "password": NEW_PASSWORD},
            headers=_csrf(state["csrf_token"]),
        )
        assert wrong.status == 400
        assert (await wrong.json())["type"].endswith("/wrong-password")
        document = await (await client.get(f"{API}/openapi.json")).json()
    for path in ("forgot", "reset", "change"):
        assert f"{API}/password/{path}" in document["paths"]


async def test_two_racing_uses_of_one_link_set_one_password(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    gateway = await _gateway(make_gateway, mailbox)
    async with gateway.client() as client:
        await _forgot(client, gateway, MAX)
    token = _link(mailbox, MAX).query["token"]
    services = gateway.services
    resets = resets_for(services)
    results = await asyncio.gather(
        resets.reset(token, services.passwords.hash("first racer 2026!"), now=gateway.clock()),
        resets.reset(token, services.passwords.hash("second racer 2026"), now=gateway.clock()),
        return_exceptions=True,
    )
    refused = [r for r in results if isinstance(r, ResetRefused)]
    assert len(refused) == 1
    assert refused[0].reason == "used"
    user = await services.store.users.find_by_email(MAX)
    assert user is not None
    winner = "first racer 2026!" if results[0] is not refused[0] else "second racer 2026"
    assert await services.passwords.verify(user.password_hash, winner)


def test_a_link_is_judged_by_its_state_and_time() -> None:
    live = ResetLink(
        token_hash="h",
        user_id="usr_1",
        created_at=0.0,
        expires_at=900.0,
        used_at=None,
        retired_at=None,
    )
    assert judge_link(live, 899.9) is None
    assert judge_link(live, 900.0) == "expired"
    assert judge_link(None, 0.0) == "unknown"
    assert judge_link(dataclasses.replace(live, used_at=10.0), 20.0) == "used"
    assert judge_link(dataclasses.replace(live, retired_at=10.0), 20.0) == "replaced"
    # A spent link says "used" even once it would have expired.
    assert judge_link(dataclasses.replace(live, used_at=10.0), 5000.0) == "used"
