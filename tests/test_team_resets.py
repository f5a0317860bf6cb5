"""2FA resets against real gateways on loopback, one SQLite file and a real SMTP server
(aiosmtpd): a principal resets a member over JSON after a fresh second factor, the member's
sessions end in another gateway on its next poll; every refusal changes nothing and is never a
500; support resets by the admin API with a token, and by the CLI in a subprocess."""

from __future__ import annotations

import asyncio
import sys
from email import message_from_bytes
from email.policy import default
from pathlib import Path
from typing import Any

import aiohttp
import pyotp
import pytest

from gateway.audit import MfaReset
from gateway.runtime.background import follow_other_processes
from gateway.store import AuditEvent
from gateway.store.records import User
from tests.conftest import GatewayFactory, RunningGateway
from tests.stand_ins import Mailbox
from tests.test_admin_support import bearer, mint
from tests.test_browser_mfa import smtp_section
from tests.test_user_api import API, _csrf, _enrol, _me, _sign_in
from tests.test_user_api_backup import _enrolled_with_a_backup_email

PROBLEM = "application/problem+json"
AVA, MAX, LEO = "ava@harbour.example", "max@harbour.example", "leo@kauri.example"
COOKIE = "gw-session"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, mailbox: Mailbox) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True, email=smtp_section(mailbox))
    return running


async def _user(gateway: RunningGateway, email: str) -> User:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user


async def _kinds(gateway: RunningGateway, email: str) -> list[tuple[str, str]]:
    return sorted(await gateway.services.store.factors.kinds((await _user(gateway, email)).id))


async def _answer(response: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    assert response.status != 500, await response.text()
    if response.status >= 400:
        assert response.content_type == PROBLEM
        assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = await response.json(content_type=None)
    return response.status, body


async def _reset(
    client: aiohttp.ClientSession, csrf: str | None, user_id: str, **headers: str
) -> tuple[int, dict[str, Any]]:
    sent = {**({} if csrf is None else _csrf(csrf)), **headers}
    return await _answer(await client.post(f"{API}/team/{user_id}/reset-mfa", headers=sent))


async def _team(client: aiohttp.ClientSession) -> tuple[int, dict[str, Any]]:
    return await _answer(await client.get(f"{API}/team"))


async def _resets(gateway: RunningGateway) -> list[AuditEvent]:
    return await gateway.services.store.audit.list(kind=MfaReset.kind)


def _mails_to(box: Mailbox, to: str) -> list[str]:
    """The subjects of the emails the SMTP server received for ``to``."""
    mails = [message_from_bytes(raw, policy=default) for raw in box.received]
    return [str(m["Subject"]) for m in mails if m["To"] == to]


async def _enrolled_member(gateway: RunningGateway) -> tuple[aiohttp.ClientSession, pyotp.TOTP]:
    """Max, enrolled with an app, signed in (verified) in a client of his own."""
    member = gateway.client()
    csrf = (await _sign_in(member, MAX))["csrf_token"]
    totp, finished = await _enrol(member, gateway, csrf)
    assert finished["mfa_verified"] is True
    return member, totp


async def test_a_principal_resets_a_member_after_a_fresh_second_factor(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    member, _ = await _enrolled_member(gateway)
    max_id = (await _user(gateway, MAX)).id
    async with member, gateway.client() as principal:
        totp, finished = await _enrolled_with_a_backup_email(principal, gateway, mailbox)
        csrf = finished["csrf_token"]
        status, team = await _team(principal)
        assert status == 200, team
        assert team["can_reset"] is True
        assert team["step_up_seconds"] == 300
        rows = {m["email"]: m for m in team["members"]}
        assert set(rows) == {AVA, MAX}
        assert rows[MAX]["enrolled"] is True
        assert rows[MAX]["methods"] == ["totp"]
        assert rows[MAX]["can_reset"] is True
        assert rows[MAX]["last_sign_in"] is not None
        assert rows[MAX]["deadline"] is not None  # the shipped AU policy's
        assert rows[AVA]["can_reset"] is False  # a principal: support's to reset

        # Five minutes and a second after the principal's check: asked to check again.
        gateway.clock.advance(301)
        status, problem = await _reset(principal, csrf, max_id)
        assert status == 403
        assert problem["type"].endswith("/step-up-required")
        assert problem["step_up_url"] == "/_gateway/mfa/verify?next=/_gateway/mfa/team&max_age=300"
        assert await _kinds(gateway, MAX) == [("totp", "primary")]
        assert await _resets(gateway) == []

        stepped = await principal.post(
            f"{API}/mfa/challenge",
            json={"method": "totp", "code": totp.at(gateway.clock())},
            headers=_csrf(csrf),
        )
        status, state = await _answer(stepped)
        assert status == 200, state
        sent_before = len(mailbox.received)
        status, done = await _reset(principal, state["csrf_token"], max_id)
        assert status == 200, done
        assert (done["user_id"], done["email"], done["emailed"]) == (max_id, MAX, True)
        assert (done["factors"], done["recovery_codes"], done["sessions"]) == (1, 10, 1)

        # Everything is gone, the member was told, and their session is over.
        assert await _kinds(gateway, MAX) == []
        assert await gateway.services.store.factors.unused_recovery_digests(max_id) == []
        assert len(mailbox.received) == sent_before + 1
        assert _mails_to(mailbox, MAX) == ["Your two-factor authentication was reset"]
        body = message_from_bytes(mailbox.received[-1], policy=default).get_body()
        text = body.get_content()  # type: ignore[union-attr]
        assert "set up two-factor authentication again" in text
        assert (await member.get(f"{API}/me")).status == 401
        again = await _sign_in(member, MAX)
        assert again["next"] == "enrolment"

        [event] = await _resets(gateway)
        assert (event.subject, event.actor) == (max_id, (await _user(gateway, AVA)).id)
        assert event.detail["via"] == "team"
        assert event.detail["checked_by"] == "totp"
        assert AVA in event.detail["by"]
        assert event.detail["sessions"] == 1


async def test_another_gateway_ends_the_members_session_on_its_next_poll(
    make_gateway: GatewayFactory, mailbox: Mailbox
) -> None:
    a = await make_gateway(policies=True, email=smtp_section(mailbox))
    b = await make_gateway(policies=True, email=smtp_section(mailbox))
    member, _ = await _enrolled_member(a)
    max_id = (await _user(a, MAX)).id
    async with member, a.client() as principal:
        raw_id = member.cookie_jar.filter_cookies(a.url)[COOKIE].value
        async with b.client() as other:
            seen = await other.get("/api/whoami", headers={"Cookie": f"{COOKIE}={raw_id}"})
            assert seen.status == 200  # b now holds the member's session in memory
            assert (await b.services.decider.enrolment(max_id)).enrolled
        _, finished = await _enrolled_with_a_backup_email(principal, a, mailbox)
        status, done = await _reset(principal, finished["csrf_token"], max_id)
        assert status == 200, done
    await follow_other_processes(b.services)  # what b's poll does every two seconds
    async with b.client() as other:
        gone = await other.get(
            "/api/whoami", headers={"Cookie": f"{COOKIE}={raw_id}", "Accept": "application/json"}
        )
        assert gone.status == 401
    assert not (await b.services.decider.enrolment(max_id)).enrolled


async def test_every_refusal_is_clear_and_changes_nothing(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    store = gateway.services.store
    member, _ = await _enrolled_member(gateway)
    ava, leo = await _user(gateway, AVA), await _user(gateway, LEO)
    max_id = (await _user(gateway, MAX)).id
    other_principal = await store.users.add(
        org_id=ava.org_id,
        email="pia@harbour.example",
        display_name="Pia",
        role="principal",
        password_hash=ava.password_hash,
        now=gateway.clock(),
    )
    gone = await store.users.add(
        org_id=ava.org_id,
        email="old@harbour.example",
        display_name="Old",
        role="member",
        password_hash=ava.password_hash,
        now=gateway.clock(),
    )
    await store.users.set_disabled(gone.id, True, now=gateway.clock())
    async with member, gateway.client() as principal:
        # A member: neither the team nor a reset, over JSON or on the page.
        member_csrf = (await _me(member))["csrf_token"]
        status, problem = await _team(member)
        assert (status, problem["type"].split("/")[-1]) == (403, "not-a-principal")
        status, problem = await _reset(member, member_csrf, ava.id)
        assert (status, problem["type"].split("/")[-1]) == (403, "not-a-principal")
        page = await member.get("/_gateway/mfa/team", headers={"Accept": "text/html"})
        assert page.status == 403
        assert "Only a principal" in await page.text()

        # A principal without 2FA sees the team, without resets, and is told why.
        csrf = (await _sign_in(principal, AVA))["csrf_token"]
        status, team = await _team(principal)
        assert status == 200
        assert team["can_reset"] is False
        assert not any(m["can_reset"] for m in team["members"])
        page = await principal.get("/_gateway/mfa/team", headers={"Accept": "text/html"})
        assert page.status == 200
        html = await page.text()
        assert "own-mfa-required" in html
        assert "/reset" not in html
        status, problem = await _reset(principal, csrf, max_id)
        assert (status, problem["type"].split("/")[-1]) == (403, "own-mfa-required")
        assert "Set up two-factor authentication for your own account first" in problem["detail"]

        # Enrolled now, and fresh: still not another organisation's user, another principal,
        # a disabled or unknown id, without the CSRF header, or from another site.
        principal.cookie_jar.clear()
        _, finished = await _enrolled_with_a_backup_email(principal, gateway, mailbox)
        csrf = finished["csrf_token"]
        refused = {
            "member-not-found": await _reset(principal, csrf, leo.id),
            "principal-reset-by-support": await _reset(principal, csrf, other_principal.id),
            "member-disabled": await _reset(principal, csrf, gone.id),
            "unknown": await _reset(principal, csrf, "usr_nobody"),
            "csrf-failed": await _reset(principal, None, max_id),
            "cross-site": await _reset(principal, csrf, max_id, **{"Sec-Fetch-Site": "cross-site"}),
            "other-origin": await _reset(principal, csrf, max_id, Origin="https://evil.example"),
        }
        assert {k: (s, p["type"].split("/")[-1]) for k, (s, p) in refused.items()} == {
            "member-not-found": (404, "member-not-found"),
            "principal-reset-by-support": (403, "principal-reset-by-support"),
            "member-disabled": (409, "member-disabled"),
            "unknown": (404, "member-not-found"),
            "csrf-failed": (403, "csrf-failed"),
            "cross-site": (403, "cross-site"),
            "other-origin": (403, "cross-site"),
        }
        # The page's form: without its CSRF token, or posted from another site.
        no_token = await principal.post(
            f"/_gateway/mfa/team/{max_id}/reset", data={}, headers={"Accept": "text/html"}
        )
        assert no_token.status == 403
        token = (await (await principal.get("/_gateway/mfa/team")).text()).split(
            'name="csrf" value="'
        )
        assert len(token) == 1  # no reset asked for yet: no form on the page
        confirm = await principal.get(f"/_gateway/mfa/team?reset={max_id}")
        form_csrf = (await confirm.text()).split('name="csrf" value="')[1].split('"')[0]
        crossed = await principal.post(
            f"/_gateway/mfa/team/{max_id}/reset",
            data={"csrf": form_csrf},
            headers={"Sec-Fetch-Site": "cross-site", "Accept": "text/html"},
            allow_redirects=False,
        )
        assert crossed.status == 403
    assert await _kinds(gateway, MAX) == [("totp", "primary")]
    assert await _kinds(gateway, LEO) == []
    assert await _resets(gateway) == []
    assert _mails_to(mailbox, MAX) == []


async def test_support_resets_a_principal_through_the_admin_api(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    async with gateway.client() as principal:
        _, finished = await _enrolled_with_a_backup_email(principal, gateway, mailbox)
        ava = await _user(gateway, AVA)
        url = f"/_gateway/admin/api/users/{ava.id}/reset-mfa"
        body = {"verified_by": "Sam (video call, passport)", "reason": "lost phone"}
        async with gateway.client() as admin:
            reports = await mint(gateway, "reports:read")
            status, problem = await _answer(
                await admin.post(url, json=body, headers=bearer(reports))
            )
            assert status == 403
            token = await mint(gateway, "users:write")
            for bad in ({"reason": "lost phone"}, {"verified_by": "  ", "reason": "x"}):
                status, problem = await _answer(
                    await admin.post(url, json=bad, headers=bearer(token))
                )
                assert (status, problem["type"].split("/")[-1]) == (422, "reset-invalid"), problem
            status, problem = await _answer(
                await admin.post(
                    "/_gateway/admin/api/users/usr_nobody/reset-mfa",
                    json=body,
                    headers=bearer(token),
                )
            )
            assert status == 404
            assert await _kinds(gateway, AVA) == [("email", "backup"), ("totp", "primary")]

            status, done = await _answer(await admin.post(url, json=body, headers=bearer(token)))
            assert status == 200, done
            assert (done["factors"], done["recovery_codes"], done["emailed"]) == (2, 10, True)
        assert await _kinds(gateway, AVA) == []
        assert (await principal.get(f"{API}/me")).status == 401
        assert finished["csrf_token"]
    assert _mails_to(mailbox, AVA)[-1] == "Your two-factor authentication was reset"
    [event] = await _resets(gateway)
    assert event.detail["via"] == "support-api"
    assert event.detail["verified_by"] == "Sam (video call, passport)"
    assert event.detail["reason"] == "lost phone"
    assert event.actor is not None
    assert "(ci)" in event.actor


async def _cli(config: Path, *args: str) -> tuple[int, str, str]:
    """The command in a subprocess, awaited so the SMTP server on this loop keeps serving."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway.cli",
        "--config",
        str(config),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_support_resets_a_principal_with_the_cli(
    gateway: RunningGateway, mailbox: Mailbox, tmp_path: Path
) -> None:
    config = tmp_path / "cli.toml"
    config.write_text(
        f'[upstream]\nurl = "http://127.0.0.1:9"\n'
        f'[store]\npath = "{gateway.services.config.store.path}"\n'
        f'[email]\nhost = "127.0.0.1"\nport = {mailbox.port}\nstarttls = false\n'
        'sender = "Support <support@gateway.example>"\n'
    )
    async with gateway.client() as principal:
        await _enrolled_with_a_backup_email(principal, gateway, mailbox)
        # Both records are required, and a blank one is refused: nothing changed.
        code, _, err = await _cli(config, "user", "reset-mfa", AVA, "--reason", "lost phone")
        assert code == 2
        assert "--verified-by" in err
        code, _, err = await _cli(
            config, "user", "reset-mfa", AVA, "--verified-by", " ", "--reason", "lost phone"
        )
        assert code == 2
        assert "verified_by: required" in err
        code, _, err = await _cli(
            config, "user", "reset-mfa", "nobody@x.example", "--verified-by", "Sam", "--reason", "r"
        )
        assert code == 1
        assert "no user has the email" in err
        assert await _kinds(gateway, AVA) == [("email", "backup"), ("totp", "primary")]

        code, out, err = await _cli(
            config,
            "user",
            "reset-mfa",
            AVA.upper(),
            "--verified-by",
            "Sam, call back on the number on file",
            "--reason",
            "new phone, old one wiped",
        )
        assert code == 0, err
        assert f"reset 2FA for {AVA}" in out
        assert "emailed" in out
        assert await _kinds(gateway, AVA) == []
        await follow_other_processes(gateway.services)  # the running gateway's next poll
        assert (await principal.get(f"{API}/me")).status == 401
    assert _mails_to(mailbox, AVA)[-1] == "Your two-factor authentication was reset"
    [event] = await _resets(gateway)
    assert (event.actor, event.detail["via"]) == ("cli", "support-cli")
    assert event.detail["verified_by"] == "Sam, call back on the number on file"
    assert event.detail["reason"] == "new phone, old one wiped"


async def test_the_routes_are_in_the_openapi_document(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        document = await (await client.get(f"{API}/openapi.json")).json()
    paths = document["paths"]
    team = paths[f"{API}/team"]["get"]
    assert team["operationId"] == "team"
    reset = paths[f"{API}/team/{{user_id}}/reset-mfa"]["post"]
    assert {p["name"] for p in reset["parameters"]} == {"user_id", "X-CSRF-Token"}
    assert "step-up-required" in reset["responses"]["403"]["description"]
    support = paths["/_gateway/admin/api/users/{user_id}/reset-mfa"]["post"]
    assert support["security"] == [{"adminToken": ["users:write"]}, {"adminToken": ["admin"]}]
    assert support["requestBody"]["content"]["application/json"]["schema"]


async def test_an_enrolled_principal_passes_their_second_factor_before_seeing_the_team(
    gateway: RunningGateway, mailbox: Mailbox
) -> None:
    async with gateway.client() as enrolling:
        await _enrolled_with_a_backup_email(enrolling, gateway, mailbox)
    async with gateway.client() as principal:
        state = await _sign_in(principal, AVA)
        assert state["next"] == "challenge"
        status, problem = await _team(principal)
        assert (status, problem["type"].split("/")[-1]) == (403, "step-up-required")
        assert "members" not in problem
        page = await principal.get(
            "/_gateway/mfa/team", headers={"Accept": "text/html"}, allow_redirects=False
        )
        assert page.status == 303
        assert page.headers["Location"].startswith("/_gateway/mfa/verify?next=/_gateway/mfa/team")
