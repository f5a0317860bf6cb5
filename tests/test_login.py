"""Signing in and out through the real gateway, in front of the real sample app."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from gateway.sandbox.demo import DEMO_PASSWORD
from gateway.signin.sessions import gateway_token
from gateway.store import Store
from tests.conftest import CSRF_FIELD, SECRET, GatewayFactory, RunningGateway, sign_in

HTML = {"Accept": "text/html,application/xhtml+xml"}
GENERIC = "That email and password do not match an account."


async def test_browser_without_session_is_sent_to_sign_in_with_its_target(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        response = await client.get("/reports?q=1", headers=HTML, allow_redirects=False)
    assert response.status == 302
    location = URL(response.headers["Location"])
    assert location.path == "/_gateway/login"
    assert location.query["next"] == "/reports?q=1"


async def test_api_caller_without_session_gets_401_problem(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        response = await client.get("/api/whoami", headers={"Accept": "application/json"})
        body = await response.json(content_type=None)
    assert response.status == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert body["type"].endswith("/unauthenticated")
    assert body["login_url"] == "/_gateway/login"


async def test_sign_in_lands_on_the_page_first_asked_for_and_app_sees_identity(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        response = await sign_in(client, next_target="/api/whoami")
        assert response.status == 303
        assert response.headers["Location"] == "/api/whoami"
        cookie = response.cookies["gw-session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        whoami = await (await client.get("/api/whoami")).json()
        raw_id = cookie.value
    user = await gateway.services.store.users.find_by_email("ava@harbour.example")
    assert user is not None
    token = whoami["headers"].pop("X-Gateway-Token")
    assert token == gateway_token(raw_id)
    assert token.startswith("xgt_")
    assert whoami["headers"] == {
        "X-Gateway-User-Id": user.id,
        "X-Gateway-User-Email": "ava@harbour.example",
        "X-Gateway-Org-Id": user.org_id,
        "X-Gateway-Role": "principal",
        "X-Gateway-Mfa": "not-required",
    }


async def test_wrong_password_and_unknown_user_get_the_same_message(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        wrong = await sign_in(client, password="not-the-password")
        unknown = await sign_in(client, email="nobody@harbour.example")
        wrong_text, unknown_text = await wrong.text(), await unknown.text()
    assert wrong.status == unknown.status == 401
    assert GENERIC in wrong_text
    assert GENERIC in unknown_text
    assert "gw-session" not in wrong.cookies
    events = await gateway.services.store.audit.list(kind="login.failed")
    assert [e.detail["reason"] for e in events] == ["wrong-password", "unknown-user"]


async def test_sign_in_without_a_valid_csrf_token_is_refused(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await client.get("/_gateway/login")
        response = await client.post(
            "/_gateway/login",
            data={"email": "ava@harbour.example", "password": DEMO_PASSWORD, "csrf": "forged"},
            allow_redirects=False,
        )
    assert response.status == 403
    assert "gw-session" not in response.cookies


async def test_session_id_is_new_at_every_sign_in(gateway: RunningGateway) -> None:
    async with gateway.client() as attacker:
        planted = (await sign_in(attacker)).cookies["gw-session"].value
    async with gateway.client() as victim:
        page = await victim.get("/_gateway/login")
        match = CSRF_FIELD.search(await page.text())
        assert match
        victim.cookie_jar.update_cookies({"gw-session": planted}, gateway.url)
        response = await victim.post(
            "/_gateway/login",
            data={"email": "max@harbour.example", "password": DEMO_PASSWORD, "csrf": match[1]},
            allow_redirects=False,
        )
        fresh = response.cookies["gw-session"].value
        whoami = await (await victim.get("/api/whoami")).json()
    assert fresh != planted
    assert whoami["headers"]["X-Gateway-User-Email"] == "max@harbour.example"
    async with gateway.client(cookies={"gw-session": planted}) as replay:
        assert (await replay.get("/api/whoami")).status == 401


async def test_session_id_is_stored_only_as_a_hash(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        raw = (await sign_in(client)).cookies["gw-session"].value
    rows = await gateway.services.store.db.fetch_all("SELECT id_hash FROM sessions")
    assert len(raw) >= 43  # 256 bits, URL-safe base64
    assert [r["id_hash"] for r in rows] != [raw]
    assert all(raw not in r["id_hash"] for r in rows)


async def test_account_is_slowed_after_repeated_failures_and_told_when_to_retry(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        for _ in range(5):
            assert (await sign_in(client, password="wrong-password!")).status == 401
        slowed = await sign_in(client)  # the right password, but too soon
        text = await slowed.text()
        assert slowed.status == 429
        assert slowed.headers["Retry-After"] == "30"
        assert "Too many attempts. Try again in 1 minute." in text
        gateway.clock.advance(30)
        assert (await sign_in(client, password="wrong-password!")).status == 401
        assert (await sign_in(client)).headers["Retry-After"] == "60"  # each wait doubles
        gateway.clock.advance(60)
        assert (await sign_in(client)).status == 303


async def test_waits_for_devices_new_to_the_account_double_up_to_the_lockout(
    gateway: RunningGateway,
) -> None:
    waits = []
    async with gateway.client() as client:
        for _ in range(4):
            assert (await sign_in(client, password="wrong-password!")).status == 401
        for _ in range(7):
            assert (await sign_in(client, password="wrong-password!")).status == 401
            refused = await sign_in(client, password="wrong-password!")
            assert refused.status == 429
            waits.append(int(refused.headers["Retry-After"]))
            gateway.clock.advance(waits[-1])
    assert waits == [30, 60, 120, 240, 480, 900, 900]


def device_cookie_of(client: aiohttp.ClientSession) -> str:
    (value,) = [c.value for c in client.cookie_jar if c.key == "gw-device"]
    return value


async def test_guesses_from_elsewhere_never_lock_the_owner_out(gateway: RunningGateway) -> None:
    async with gateway.client() as first:
        assert (await sign_in(first)).status == 303  # the owner's browser, remembered
        device = device_cookie_of(first)
    async with gateway.client() as attacker:
        statuses = [(await sign_in(attacker, password=f"guess-{n}-pass")).status for n in range(20)]
    assert statuses.count(401) == 5
    assert statuses.count(429) == 15
    async with gateway.client() as owner:
        owner.cookie_jar.update_cookies({"gw-device": device}, gateway.url)
        assert (await sign_in(owner)).status == 303


async def test_a_known_device_has_an_allowance_of_its_own(gateway: RunningGateway) -> None:
    async with gateway.client() as first:
        assert (await sign_in(first)).status == 303
        device = device_cookie_of(first)
    async with gateway.client() as owner:
        owner.cookie_jar.update_cookies({"gw-device": device}, gateway.url)
        for _ in range(5):
            assert (await sign_in(owner, password="wrong-password!")).status == 401
        locked = await sign_in(owner)
        assert locked.status == 429
        assert locked.headers["Retry-After"] == "900"  # its own allowance locks, as before
    async with gateway.client() as other:
        assert (await sign_in(other)).status == 303  # the shared allowance is untouched


async def test_a_known_device_stays_known_after_the_secret_key_is_rotated(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    before: RunningGateway = await make_gateway()
    async with before.client() as first:
        assert (await sign_in(first)).status == 303
        device = device_cookie_of(first)
    rotated: RunningGateway = await make_gateway(
        security={"secret_key": "r" * 40, "previous_secret_keys": [SECRET]},
        store={"path": str(tmp_path / "rotated.sqlite3")},
    )
    async with rotated.client() as attacker:
        for n in range(5):
            assert (await sign_in(attacker, password=f"guess-{n}-pass")).status == 401
        assert (await sign_in(attacker)).status == 429  # the shared allowance is spent
    async with rotated.client() as owner:
        owner.cookie_jar.update_cookies({"gw-device": device}, rotated.url)
        assert (await sign_in(owner)).status == 303


@pytest.mark.parametrize("forged", ["moved", "made-up", "garbage"])
async def test_a_device_cookie_counts_only_for_its_own_account(
    gateway: RunningGateway, forged: str
) -> None:
    async with gateway.client() as first:
        assert (await sign_in(first, email="max@harbour.example")).status == 303
        max_device = device_cookie_of(first)
    cookie = {
        "moved": max_device,  # issued for another account
        "made-up": max_device.split(".")[0] + "." + "0" * 64,
        "garbage": "x",
    }[forged]
    async with gateway.client() as attacker:
        for n in range(5):
            assert (await sign_in(attacker, password=f"guess-{n}-pass")).status == 401
    async with gateway.client() as pretender:
        pretender.cookie_jar.update_cookies({"gw-device": cookie}, gateway.url)
        assert (await sign_in(pretender)).status == 429


async def test_client_address_is_locked_after_failures_across_accounts(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(throttle={"address_failures": 3})
    async with gateway.client() as client:
        for n in range(3):
            await sign_in(client, email=f"guess{n}@harbour.example", password="whatever-pass")
        response = await sign_in(client, email="max@harbour.example")
    assert response.status == 429


async def test_session_ends_after_thirty_idle_minutes(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        gateway.clock.advance(29 * 60)
        assert (await client.get("/api/whoami")).status == 200
        gateway.clock.advance(30 * 60)
        assert (await client.get("/api/whoami")).status == 401


async def test_session_ends_twelve_hours_after_sign_in_however_active(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        for _ in range(35):  # every 20 minutes for 11h40m
            gateway.clock.advance(20 * 60)
            assert (await client.get("/api/whoami")).status == 200
        gateway.clock.advance(20 * 60)
        assert (await client.get("/api/whoami")).status == 401


async def test_sign_out_ends_the_session_on_the_server(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        raw = (await sign_in(client)).cookies["gw-session"].value
        page = await client.get("/_gateway/logout")
        match = CSRF_FIELD.search(await page.text())
        assert match
        response = await client.post(
            "/_gateway/logout", data={"csrf": match.group(1)}, allow_redirects=False
        )
        assert response.status == 303
        assert response.headers["Location"] == "/_gateway/login?signed_out=1"
    async with gateway.client(cookies={"gw-session": raw}) as replay:
        assert (await replay.get("/api/whoami")).status == 401
    assert [e.kind for e in await gateway.services.store.audit.list(kind="logout")] == ["logout"]


async def test_sign_out_without_csrf_token_is_refused(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        response = await client.post("/_gateway/logout", data={}, allow_redirects=False)
        assert response.status == 403
        assert (await client.get("/api/whoami")).status == 200


async def test_unsafe_next_falls_back_to_the_root(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        response = await sign_in(client, next_target="//evil.example/")
    assert response.headers["Location"] == "/"


async def test_secure_cookies_use_the_host_prefix(make_gateway: GatewayFactory) -> None:
    gateway: RunningGateway = await make_gateway(security={"cookie_secure": True})
    async with gateway.client() as client:
        page = await client.get("/_gateway/login")
        await page.text()
        set_cookie = page.headers.getall("Set-Cookie")
    assert any(re.match(r"__Host-gw-login=[^;]+;", c) for c in set_cookie)
    assert all("Secure" in c and "Path=/" in c and "HttpOnly" in c for c in set_cookie)


async def test_pages_are_never_cached_or_framed(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        page = await client.get("/_gateway/login")
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]


async def test_warm_signed_in_request_runs_no_sql(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        assert (await client.get("/api/whoami")).status == 200
        before = gateway.services.store.db.statement_count
        for _ in range(20):
            assert (await client.get("/api/whoami")).status == 200
        assert gateway.services.store.db.statement_count == before


async def test_last_use_is_written_behind_for_the_idle_timeout(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        raw = (await sign_in(client)).cookies["gw-session"].value
        gateway.clock.advance(600)
        await client.get("/api/whoami")
    await gateway.services.sessions.flush()
    from gateway.signin.sessions import hash_session_id

    record = await gateway.services.store.sessions.get(hash_session_id(raw))
    assert record is not None
    assert record.last_seen_at == gateway.clock()


async def test_two_sign_in_tabs_both_work(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        first = CSRF_FIELD.search(await (await client.get("/_gateway/login")).text())
        second = CSRF_FIELD.search(await (await client.get("/_gateway/login")).text())
        assert first
        assert second
        response = await client.post(
            "/_gateway/login",
            data={"email": "ava@harbour.example", "password": DEMO_PASSWORD, "csrf": first[1]},
            allow_redirects=False,
        )
    assert response.status == 303


async def test_concurrent_guesses_cannot_outrun_the_throttle(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        page = await client.get("/_gateway/login")
        match = CSRF_FIELD.search(await page.text())
        assert match

        async def attempt(password: str) -> int:
            response = await client.post(
                "/_gateway/login",
                data={"email": "ava@harbour.example", "password": password, "csrf": match[1]},
                allow_redirects=False,
            )
            return response.status

        statuses = await asyncio.gather(
            *(attempt(f"wrong-password-{n}") for n in range(40)), attempt(DEMO_PASSWORD)
        )
    # Five attempts are judged (the account limit); every other one is refused unjudged.
    assert sorted(statuses).count(429) == 36
    assert statuses.count(401) + statuses.count(303) == 5


async def test_successful_sign_ins_do_not_lock_a_shared_address(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(throttle={"address_failures": 3})
    for _ in range(5):
        async with gateway.client() as client:
            assert (await sign_in(client)).status == 303


async def test_audit_never_records_what_was_typed_for_an_unknown_account(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email="my-secret-password@oops", password="x" * 12)
    (event,) = await gateway.services.store.audit.list(kind="login.failed")
    assert event.subject is None
    assert "my-secret-password" not in json.dumps(event.detail)
    rows = await gateway.services.store.db.fetch_all("SELECT key FROM throttle")
    assert all("my-secret-password" not in r["key"] for r in rows)


async def test_a_user_disabled_by_another_process_is_signed_out(
    gateway: RunningGateway, tmp_path: Path
) -> None:
    async with gateway.client() as client:
        await sign_in(client)
        assert (await client.get("/api/whoami")).status == 200
        other = await Store.open(gateway.services.config.store.path)  # e.g. the CLI
        user = await other.users.find_by_email("ava@harbour.example")
        assert user is not None
        await other.users.set_disabled(user.id, True, now=gateway.clock())
        await other.close()
        await gateway.services.sessions.follow_revocations()  # what the 2 s refresher does
        assert (await client.get("/api/whoami")).status == 401
        assert (await sign_in(client)).status == 401
