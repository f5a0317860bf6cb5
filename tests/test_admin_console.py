"""Gateway admins signing in at /_gateway/admin/ with password and TOTP, over real HTTP.

A real gateway on loopback and a real SQLite file; the clock is injected, codes are made
for the gateway's time from the seed the admin was given.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp
import pytest

from gateway.admin.console import GENERIC_FAILURE
from gateway.admin.console import admin_sign_in as admin_sign_in_service
from gateway.crypto.keys import Keys
from gateway.mfa.totp import code_at
from gateway.runtime.background import ENDED_SESSION_KEEP_SECONDS, housekeep
from gateway.runtime.runner import Gateway
from gateway.signin.admins import add_admin, disable_admin, open_seed
from gateway.store import Store
from gateway.store.sealed import reseal_all, sealed_columns
from tests.conftest import (
    CSRF_FIELD,
    SECRET,
    GatewayFactory,
    RunningGateway,
    fast_passwords,
    gateway_config,
    sign_in,
)

EMAIL = "olive@gw.example"
PASSWORD = "a long admin passphrase"
CONSOLE = "/_gateway/admin/"


def seed_of(uri: str) -> str:
    return parse_qs(urlparse(uri).query)["secret"][0]


async def add(gateway: RunningGateway, email: str = EMAIL) -> str:
    """Add an admin as the CLI does; returns the authenticator seed from the URI."""
    services = gateway.services
    added = await add_admin(
        services.store,
        services.keys.at_rest,
        email=email,
        name="Olive Ops",
        password_hash=services.passwords.hash(PASSWORD),
        issuer="Xero Gateway",
        now=gateway.clock(),
    )
    return seed_of(added.uri)


async def admin_sign_in(
    http: aiohttp.ClientSession,
    code: str,
    *,
    email: str = EMAIL,
    password: str = PASSWORD,
    headers: dict[str, str] | None = None,
) -> aiohttp.ClientResponse:
    page = await (await http.get(CONSOLE)).text()
    assert 'action="/_gateway/admin/login"' in page, "not the admin sign-in page"
    match = CSRF_FIELD.search(page)
    assert match, "the admin sign-in page has no CSRF field"
    return await http.post(
        "/_gateway/admin/login",
        data={"email": email, "password": password, "code": code, "csrf": match[1]},
        headers=headers,
        allow_redirects=False,
    )


async def landing(http: aiohttp.ClientSession) -> str | None:
    """The console page's text when signed in as an admin; None when it asks to sign in."""
    response = await http.get(CONSOLE)
    assert response.status == 200
    text = await response.text()
    return text if 'id="admin-identity"' in text else None


async def audit_reasons(gateway: RunningGateway) -> list[str]:
    events = await gateway.services.store.audit.list()
    return [e.detail["reason"] for e in events if e.kind == "admin.sign_in_failed"]


async def test_admin_signs_in_sees_readiness_and_signs_out(make_gateway: GatewayFactory) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    seed = await add(gateway)
    async with gateway.client() as http:
        assert await landing(http) is None
        done = await admin_sign_in(http, code_at(seed, gateway.clock()))
        assert done.status == 303
        assert done.headers["Location"] == CONSOLE
        cookie = done.cookies["gw-admin"]
        assert cookie["httponly"]
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        page = await landing(http)
        assert page is not None
        assert "Olive Ops" in page
        assert EMAIL in page
        assert 'data-policy="au-ato-2fa"' in page
        match = CSRF_FIELD.search(page)
        assert match
        out = await http.post(
            "/_gateway/admin/logout", data={"csrf": match[1]}, allow_redirects=False
        )
        assert out.status == 303
        assert await landing(http) is None
    kinds = [e.kind for e in await gateway.services.store.audit.list()]
    assert "admin.signed_in" in kinds
    assert "admin.signed_out" in kinds


async def test_wrong_password_wrong_code_replay_and_unknown_get_one_message(
    gateway: RunningGateway,
) -> None:
    seed = await add(gateway)
    now = gateway.clock()
    async with gateway.client() as http:
        attempts = [
            await admin_sign_in(http, code_at(seed, now), password="not the password"),
            await admin_sign_in(http, "000000" if code_at(seed, now) != "000000" else "111111"),
            await admin_sign_in(http, code_at(seed, now), email="nobody@gw.example"),
        ]
        assert (await admin_sign_in(http, code_at(seed, now))).status == 303
    async with gateway.client() as http:
        # The same code again, and a code of the step before: both already spent.
        attempts.append(await admin_sign_in(http, code_at(seed, now)))
        attempts.append(await admin_sign_in(http, code_at(seed, now - 30)))
    for response in attempts:
        assert response.status == 401
        assert GENERIC_FAILURE in await response.text()
    assert await audit_reasons(gateway) == [
        "bad-password",
        "bad-code",
        "unknown-admin",
        "replayed-code",
        "replayed-code",
    ]
    text = str([e.detail for e in await gateway.services.store.audit.list()])
    assert PASSWORD not in text
    assert code_at(seed, now) not in text


async def test_the_account_is_slowed_after_failures_even_with_the_right_code(
    gateway: RunningGateway,
) -> None:
    seed = await add(gateway)
    failures = gateway.services.config.throttle.account_failures
    async with gateway.client() as http:
        for _ in range(failures):
            wrong = await admin_sign_in(http, code_at(seed, gateway.clock()), password="wrong one")
            assert wrong.status == 401
        held = await admin_sign_in(http, code_at(seed, gateway.clock()))
        assert held.status == 429
        assert int(held.headers["Retry-After"]) > 0
        assert await landing(http) is None
        gateway.clock.advance(int(held.headers["Retry-After"]) + 30)
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
    assert "throttled" in await audit_reasons(gateway)


async def test_an_address_is_locked_after_failures_across_accounts(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(throttle={"address_failures": 3})
    seed = await add(gateway)
    async with gateway.client() as http:
        for n in range(3):
            wrong = await admin_sign_in(http, "123456", email=f"guess{n}@gw.example")
            assert wrong.status == 401
        locked = await admin_sign_in(http, code_at(seed, gateway.clock()))
        assert locked.status == 429


async def test_a_disabled_admin_is_refused_here_and_in_another_gateway(
    make_gateway: GatewayFactory, tmp_path: Path, upstream_url: str
) -> None:
    gateway: RunningGateway = await make_gateway()
    seed = await add(gateway)
    config = gateway_config(tmp_path, upstream_url)
    other = await Gateway.open(config, clock=gateway.clock, passwords=fast_passwords())
    await other.start()
    try:
        async with gateway.client() as http:
            assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
            cookie = http.cookie_jar.filter_cookies(gateway.url)["gw-admin"].value
            async with aiohttp.ClientSession(
                base_url=other.front.url, cookies={"gw-admin": cookie}
            ) as elsewhere:
                assert await landing(elsewhere) is not None  # one session, both gateways
                await disable_admin(gateway.services.store, EMAIL, gateway.clock())
                assert await landing(elsewhere) is None
            assert await landing(http) is None
            gateway.clock.advance(30)
            again = await admin_sign_in(http, code_at(seed, gateway.clock()))
            assert again.status == 401
            assert GENERIC_FAILURE in await again.text()
    finally:
        await other.stop()
    assert (await audit_reasons(gateway))[-1] == "disabled"


async def test_idle_and_absolute_limits_end_admin_sessions(make_gateway: GatewayFactory) -> None:
    gateway: RunningGateway = await make_gateway(
        admin={"session_idle_minutes": 15, "session_absolute_hours": 1}
    )
    seed = await add(gateway)
    async with gateway.client() as http:
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        gateway.clock.advance(14 * 60)
        assert await landing(http) is not None
        gateway.clock.advance(15 * 60)  # idle for the whole limit
        assert await landing(http) is None

        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        for _ in range(5):  # busy for 50 minutes
            gateway.clock.advance(10 * 60)
            assert await landing(http) is not None
        gateway.clock.advance(10 * 60)  # an hour after sign-in, however busy
        assert await landing(http) is None


async def test_an_app_session_is_no_admin_session_and_the_reverse(
    make_gateway: GatewayFactory, echo_url: str
) -> None:
    gateway: RunningGateway = await make_gateway(echo_url)
    seed = await add(gateway)
    async with gateway.client() as http:
        assert (await sign_in(http)).status == 303  # an app user, signed in
        assert await landing(http) is None
        user_cookie = http.cookie_jar.filter_cookies(gateway.url)["gw-session"].value
    async with aiohttp.ClientSession(
        base_url=gateway.url, cookies={"gw-admin": user_cookie}
    ) as forged:
        assert await landing(forged) is None  # a user's session id names no admin session
    async with gateway.client() as http:
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        app = await http.get("/anything", allow_redirects=False)
        assert app.status == 401  # sign in first (a script is told so; a page is redirected)
        admin_cookie = http.cookie_jar.filter_cookies(gateway.url)["gw-admin"].value
    async with aiohttp.ClientSession(
        base_url=gateway.url, cookies={"gw-session": admin_cookie}
    ) as forged:
        app = await forged.get("/anything", allow_redirects=False)
        assert app.status == 401  # an admin session id is no app session


async def test_the_admin_cookie_never_reaches_the_app(
    make_gateway: GatewayFactory, echo_url: str
) -> None:
    gateway: RunningGateway = await make_gateway(echo_url)
    seed = await add(gateway)
    async with gateway.client() as http:
        assert (await sign_in(http)).status == 303
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        echoed = await (await http.get("/echo")).json()
    cookies = [value for name, value in echoed["headers"] if name.lower() == "cookie"]
    assert not any("gw-admin" in value or "gw-session" in value for value in cookies)


@pytest.mark.parametrize(
    "headers",
    [{"Sec-Fetch-Site": "cross-site"}, {"Origin": "http://evil.example"}],
    ids=["sec-fetch-site", "origin"],
)
async def test_forms_from_another_site_are_refused(
    gateway: RunningGateway, headers: dict[str, str]
) -> None:
    seed = await add(gateway)
    async with gateway.client() as http:
        refused = await admin_sign_in(http, code_at(seed, gateway.clock()), headers=headers)
        assert refused.status == 403
        assert await landing(http) is None
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        page = await landing(http)
        assert page is not None
        match = CSRF_FIELD.search(page)
        assert match
        out = await http.post(
            "/_gateway/admin/logout", data={"csrf": match[1]}, headers=headers,
            allow_redirects=False,
        )  # fmt: skip
        assert out.status == 403
        assert await landing(http) is not None


async def test_forms_without_their_csrf_token_are_refused(gateway: RunningGateway) -> None:
    seed = await add(gateway)
    async with gateway.client() as http:
        await http.get(CONSOLE)
        data = {"email": EMAIL, "password": PASSWORD, "code": code_at(seed, gateway.clock())}
        missing = await http.post("/_gateway/admin/login", data=data, allow_redirects=False)
        assert missing.status == 403
        assert await landing(http) is None
        assert (await admin_sign_in(http, code_at(seed, gateway.clock() + 30))).status == 303
        for token in ("", "forged"):
            out = await http.post(
                "/_gateway/admin/logout", data={"csrf": token}, allow_redirects=False
            )
            assert out.status == 403
        assert await landing(http) is not None


async def test_bad_input_is_refused_clearly(gateway: RunningGateway) -> None:
    await add(gateway)
    async with gateway.client() as http:
        page = await http.get(CONSOLE)
        match = CSRF_FIELD.search(await page.text())
        assert match
        odd = await http.post(
            "/_gateway/admin/login",
            data={"email": "x" * 5000, "password": "p" * 5000, "code": "\x00" * 50,
                  "csrf": match[1]},
            allow_redirects=False,
        )  # fmt: skip
        assert odd.status == 401
        long_cookie = await http.get(CONSOLE, headers={"Cookie": "gw-admin=" + "a" * 4000})
        assert long_cookie.status == 200
        assert (await http.get("/_gateway/admin", allow_redirects=False)).status == 303


async def test_rotate_key_reseals_admin_seeds(tmp_path: Path) -> None:
    fresh = "a-new-secret-key-that-is-long-enough-42"
    old, new = Keys.derive(SECRET), Keys.derive(fresh, (SECRET,))
    assert any(column.name == "admins.totp_secret" for column in sealed_columns())
    async with await Store.open(tmp_path / "gw.sqlite3") as store:
        added = await add_admin(
            store, old.at_rest, email=EMAIL, name="Olive", password_hash="x", issuer="GW", now=1.0
        )
        counts = {c.column: c for c in await reseal_all(store.db, new.at_rest)}
        assert counts["admins.totp_secret"].resealed == 1
        admin = await store.admins.get(added.admin.id)
        alone = Keys.derive(fresh)
        assert open_seed(alone.at_rest, admin) == seed_of(added.uri)


async def test_housekeeping_forgets_old_admin_sessions_and_counts(gateway: RunningGateway) -> None:
    seed = await add(gateway)
    store = gateway.services.store
    async with gateway.client() as http:
        wrong = await admin_sign_in(http, code_at(seed, gateway.clock()), password="wrong one")
        assert wrong.status == 401
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
    count = "SELECT count(*) AS n FROM admin_sessions"
    assert (await store.db.fetch_one(count) or {"n": 0})["n"] == 1
    await housekeep(gateway.services)
    assert (await store.db.fetch_one(count) or {"n": 0})["n"] == 1  # still open
    gateway.clock.advance(gateway.services.config.admin.session_absolute_hours * 3600)
    gateway.clock.advance(ENDED_SESSION_KEEP_SECONDS + 1)
    await housekeep(gateway.services)
    assert (await store.db.fetch_one(count) or {"n": 1})["n"] == 0
    left = await store.db.fetch_one(
        "SELECT count(*) AS n FROM throttle WHERE key LIKE 'admin-login:%'"
    )
    assert left is not None
    assert left["n"] == 0


async def test_a_signed_in_admin_may_read_the_admin_api_but_change_nothing(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(policies=True)
    seed = await add(gateway)
    readiness = "/_gateway/admin/api/reports/readiness"
    async with gateway.client() as http:
        assert (await sign_in(http)).status == 303  # an app user's session: no admin powers
        assert (await http.get(readiness)).status == 401
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        read = await http.get(readiness)
        assert read.status == 200
        body = await read.json()
        assert [p["policy_id"] for p in body["policies"]] == ["au-ato-2fa"]
        assert read.headers["Cache-Control"] == "no-store"
        cross = await http.get(readiness, headers={"Sec-Fetch-Site": "cross-site"})
        assert cross.status == 401
        change = await http.post(
            "/_gateway/admin/api/policies/au-ato-2fa/disable", headers={"If-Match": '"1"'}
        )
        assert change.status == 401  # changes need a bearer token
        assert (await http.get("/_gateway/admin/api/policies/au-ato-2fa")).status == 200
        await disable_admin(gateway.services.store, EMAIL, gateway.clock())
        assert (await http.get(readiness)).status == 401
    policy = await gateway.services.store.policies.get("au-ato-2fa")
    assert policy.enabled


async def test_each_sign_in_gets_a_new_session_id_and_ends_the_one_it_came_with(
    gateway: RunningGateway,
) -> None:
    seed = await add(gateway)
    async with gateway.client() as http:
        assert (await admin_sign_in(http, code_at(seed, gateway.clock()))).status == 303
        first = http.cookie_jar.filter_cookies(gateway.url)["gw-admin"].value
    async with gateway.client() as http:
        page = await (await http.get(CONSOLE)).text()  # the form, before the cookie is planted
        match = CSRF_FIELD.search(page)
        assert match
        http.cookie_jar.update_cookies({"gw-admin": first})
        gateway.clock.advance(30)
        data = {"email": EMAIL, "password": PASSWORD, "code": code_at(seed, gateway.clock())}
        done = await http.post(
            "/_gateway/admin/login", data={**data, "csrf": match[1]}, allow_redirects=False
        )
        assert done.status == 303
        second = done.cookies["gw-admin"].value
        assert second != first
        assert await landing(http) is not None
    async with aiohttp.ClientSession(base_url=gateway.url, cookies={"gw-admin": first}) as old:
        assert await landing(old) is None


async def test_two_sign_ins_racing_with_one_code_let_one_in(gateway: RunningGateway) -> None:
    seed = await add(gateway)
    admins = admin_sign_in_service(gateway.services)
    code = code_at(seed, gateway.clock())
    results = await asyncio.gather(*(admins.check(EMAIL, PASSWORD, code) for _ in range(4)))
    assert sorted(r.reason for r in results) == ["ok", *["replayed-code"] * 3]


async def test_under_tls_the_admin_cookies_are_host_prefixed_and_secure(
    make_gateway: GatewayFactory,
) -> None:
    gateway: RunningGateway = await make_gateway(security={"cookie_secure": True})
    async with gateway.client() as http:
        page = await http.get(CONSOLE)
    set_cookie = page.headers.getall("Set-Cookie")
    nonce = next(value for value in set_cookie if value.startswith("__Host-gw-admin-login="))
    assert "Secure" in nonce
    assert "HttpOnly" in nonce
    assert "SameSite=Strict" in nonce
    assert "Path=/" in nonce
    assert "Domain" not in nonce
    assert gateway.services.cookies.admin_session == "__Host-gw-admin"
