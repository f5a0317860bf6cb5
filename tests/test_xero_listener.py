"""The Xero listener on loopback, in front of the Xero emulator, on a real SQLite file: the
gateway token and service keys as bearers, tenants of the caller's organisation only, the
MFA rule for refreshes, single-flight refresh, invalid_grant, Xero's failures and rate
limits, /connections, and unmodified xero-python pointed at it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import html
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp
import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from xero_python.accounting import AccountingApi, Contact, Invoice, Invoices, LineItem
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import HTTPStatusException
from xero_python.identity import IdentityApi
from yarl import URL

from gateway.clock import ManualClock
from gateway.config import XeroConfig
from gateway.runtime.app import front_listener
from gateway.runtime.server import start_site
from gateway.runtime.xero_listener import xero_listener
from gateway.sandbox.sample_app import SampleSettings, create_sample_app
from gateway.sandbox.xero_emulator import AU_TENANT, NZ_TENANT, XeroEmulator
from gateway.signin.sessions import LiveSession
from gateway.store.xero import NewConnection, XeroGrant
from gateway.xero.identity import IdentityClient
from gateway.xero.service_keys import create_service_key, revoke_service_key
from gateway.xero_api.callers import SERVICE_KEY_RECHECK_SECONDS
from tests.conftest import START, GatewayFactory, RunningGateway, consent_code
from tests.manual_time import ManualTime
from tests.xero_flow import HTML, signed_in, verify

T = TypeVar("T")
VERIFIER = "listener-verifier-" + "v" * 40
PROBLEM = "/_gateway/problems/"


@dataclass
class World:
    gateway: RunningGateway
    xero: XeroEmulator
    clock: ManualClock
    http: aiohttp.ClientSession
    grants: dict[str, XeroGrant]  # by tenant id

    @property
    def listener(self) -> URL:
        return self.gateway.xero_url

    async def session(self, email: str, *, verified: bool) -> LiveSession:
        """A signed-in session of the demo user (as the front makes them), verified or not."""
        services = self.gateway.services
        user = await services.store.users.find_by_email(email)
        assert user is not None
        _, live = await services.sessions.create(user, client_addr="127.0.0.1")
        if verified:
            _, live = await services.sessions.mark_verified(live, "totp", self.clock())
        return live

    async def service_key(self, name: str) -> tuple[str, str, str]:
        """A new service key of Ava's organisation: (the raw key, its id, the org id)."""
        services = self.gateway.services
        user = await services.store.users.find_by_email("ava@harbour.example")
        assert user is not None
        raw, key = await create_service_key(
            services.store,
            services.keys.service_keys,
            org_id=user.org_id,
            name=name,
            now=self.clock(),
            by="test",
        )
        return raw, key.id, user.org_id

    async def call(
        self, bearer: str, path: str, *, tenant: str | None = AU_TENANT.tenant_id, **kw: Any
    ) -> tuple[int, Any, CIMultiDictProxy[str]]:
        headers = {"Authorization": f"Bearer {bearer}", "Accept": "application/json"}
        if tenant is not None:
            headers["xero-tenant-id"] = tenant
        headers.update(kw.pop("headers", {}))
        method = kw.pop("method", "GET")
        url = URL(str(self.listener) + path, encoded=True)  # sent as written, ".." too
        async with self.http.request(method, url, headers=headers, **kw) as r:
            body = await r.json(content_type=None) if await r.read() else None
            return r.status, body, r.headers

    async def expire(self, tenant_id: str = AU_TENANT.tenant_id) -> None:
        """Move the clock to 30 s before the tenant's current access token runs out."""
        grant = await self.gateway.services.store.xero.require(self.grants[tenant_id].id)
        self.clock.set(max(self.clock(), grant.tokens.expires_at - 30))


async def connect(
    gateway: RunningGateway,
    xero: XeroEmulator,
    http: aiohttp.ClientSession,
    email: str,
    tenant: str,
) -> XeroGrant:
    """A real consent at the emulator, stored through the vault for the user's organisation
    with only ``tenant`` (the connect flow itself is tested on its own)."""
    services = gateway.services
    user = await services.store.users.find_by_email(email)
    assert user is not None
    xero.state.consent_tenants = (tenant,)  # the emulator's one user consents per tenant
    code = await consent_code(http, xero, verifier=VERIFIER)
    identity = IdentityClient(XeroConfig(**xero.xero_settings()), http)
    tokens = await identity.exchange_code(code=code, code_verifier=VERIFIER, now=gateway.clock())
    async with http.get(
        xero.api_url + "/connections", headers={"Authorization": f"Bearer {tokens.access_token}"}
    ) as answer:
        listed = await answer.json()
    connections = [
        NewConnection(
            id=c["id"],
            tenant_id=c["tenantId"],
            tenant_type=c["tenantType"],
            tenant_name=c["tenantName"],
        )
        for c in listed
        if c["tenantId"] == tenant
    ]
    assert gateway.gateway is not None
    assert gateway.gateway.xero is not None
    vault = gateway.gateway.xero.custody.vault
    return await vault.connect(
        org_id=user.org_id,
        connected_by=user.id,
        tokens=tokens,
        connections=connections,
        now=gateway.clock(),
    )


@pytest.fixture
def sample_settings() -> SampleSettings:
    return SampleSettings()


@pytest.fixture
async def upstream_url(sample_settings: SampleSettings) -> AsyncIterator[str]:
    """The sample app behind the gateway, told where the Xero listener is once it runs."""
    runner, port = await start_site(
        create_sample_app(sample_settings), "127.0.0.1", 0, max_line_size=8190, max_field_size=8190
    )
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


@pytest.fixture
def manual_time() -> ManualTime:
    return ManualTime(START)


@pytest.fixture
def clock(manual_time: ManualTime) -> ManualClock:
    """The clock of the gateway and the emulator: one whose sleeps end as the test moves it."""
    return manual_time.clock


@pytest.fixture
async def world(
    make_gateway: GatewayFactory, xero: XeroEmulator, clock: ManualClock
) -> AsyncIterator[World]:
    gateway: RunningGateway = await make_gateway(
        policies=True,
        xero=xero.xero_settings(),
        xero_proxy={"port": 0, "retry_backoff": 0.01, "max_wait": 5.0},
    )
    async with aiohttp.ClientSession() as http:
        grants = {
            AU_TENANT.tenant_id: await connect(
                gateway, xero, http, "ava@harbour.example", AU_TENANT.tenant_id
            ),
            NZ_TENANT.tenant_id: await connect(
                gateway, xero, http, "nia@kauri.example", NZ_TENANT.tenant_id
            ),
        }
        yield World(gateway=gateway, xero=xero, clock=clock, http=http, grants=grants)


def problem_type(body: Any) -> str:
    assert isinstance(body, dict), body
    kind: str = body["type"]
    return kind.removeprefix(PROBLEM)


# --- the gateway token ------------------------------------------------------------------


async def test_no_xero_listener_without_xero_custody_configured(gateway: RunningGateway) -> None:
    assert gateway.gateway is not None
    assert gateway.gateway.xero is None
    assert [listener.name for listener in gateway.gateway.listeners] == ["front"]


async def test_a_verified_sessions_token_reads_xero_through_the_listener(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    status, body, headers = await world.call(live.gateway_token, "/api.xro/2.0/Organisation")
    assert status == 200, body
    assert body["Organisations"][0]["CountryCode"] == "AU"
    assert "X-MinLimit-Remaining" in headers  # Xero's rate headers come back
    assert "X-Request-Id" in headers


async def test_the_front_sends_the_app_the_token_the_listener_accepts(world: World) -> None:
    from tests.conftest import sign_in

    async with world.gateway.client() as browser:
        await sign_in(browser, email="max@harbour.example")
        whoami = await (await browser.get("/api/whoami")).json()
    token = whoami["headers"]["X-Gateway-Token"]
    status, body, _ = await world.call(token, "/api.xro/2.0/Invoices")
    assert status == 200, body
    assert len(body["Invoices"]) == 2


async def test_a_restarted_or_other_process_sends_the_same_token(world: World) -> None:
    from tests.conftest import sign_in

    async with world.gateway.client() as browser:
        await sign_in(browser, email="max@harbour.example")
        first = (await (await browser.get("/api/whoami")).json())["headers"]["X-Gateway-Token"]
        # As a restarted gateway, or another replica, finds it: the session only in the store.
        world.gateway.services.sessions._cache.clear()
        again = (await (await browser.get("/api/whoami")).json())["headers"]["X-Gateway-Token"]
    assert again == first
    assert first.startswith("xgt_")
    assert (await world.call(first, "/connections", tenant=None))[0] == 200


@pytest.mark.parametrize(
    "bearer",
    ["", "xgt_" + "A" * 43, "xsk_" + "B" * 43, "not-a-token", "xgt_" + "A" * 400],
)
async def test_unknown_tokens_get_401(world: World, bearer: str) -> None:
    status, body, headers = await world.call(bearer, "/api.xro/2.0/Organisation")
    assert status == 401
    assert problem_type(body) == "unauthenticated"
    assert headers["WWW-Authenticate"].startswith("Bearer")


async def test_no_authorization_header_gets_401(world: World) -> None:
    async with world.http.get(world.listener / "connections") as answer:
        assert answer.status == 401
        assert problem_type(await answer.json(content_type=None)) == "unauthenticated"


async def test_a_token_dies_with_its_session_signed_out_expired_or_rotated(world: World) -> None:
    services = world.gateway.services
    signed_out = await world.session("ava@harbour.example", verified=True)
    await services.sessions.end(signed_out.id_hash)
    assert (await world.call(signed_out.gateway_token, "/connections"))[0] == 401

    rotated = await world.session("max@harbour.example", verified=False)
    _, verified = await services.sessions.mark_verified(rotated, "totp", world.clock())
    assert verified.gateway_token != rotated.gateway_token  # 2FA gives a new token
    assert (await world.call(rotated.gateway_token, "/connections"))[0] == 401
    assert (await world.call(verified.gateway_token, "/connections"))[0] == 200

    old = await world.session("max@harbour.example", verified=True)
    assert (await world.call(old.gateway_token, "/connections"))[0] == 200
    world.clock.advance(services.sessions.limits.absolute + 1)
    assert (await world.call(old.gateway_token, "/connections"))[0] == 401


async def test_a_session_ended_by_another_process_ends_its_token_at_the_next_poll(
    world: World,
) -> None:
    services = world.gateway.services
    live = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(live.gateway_token, "/connections"))[0] == 200
    # Another process (the CLI, a replica) ends it in the shared store.
    await services.store.sessions.end(live.id_hash, world.clock())
    await services.sessions.follow_revocations()  # what the 2 s poll runs
    assert (await world.call(live.gateway_token, "/connections"))[0] == 401


async def test_a_warm_call_with_a_gateway_token_runs_no_sql_to_find_the_caller(
    world: World,
) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    db = world.gateway.services.store.db
    before = db.statement_count
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    assert db.statement_count == before


# --- tenants and /connections -----------------------------------------------------------


async def test_another_organisations_tenant_is_not_linked(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    for tenant in (NZ_TENANT.tenant_id, "00000000-0000-0000-0000-000000000000", None):
        status, body, _ = await world.call(
            live.gateway_token, "/api.xro/2.0/Invoices", tenant=tenant
        )
        assert status == 403
        assert problem_type(body) == "tenant-not-linked"


async def test_a_second_tenant_header_is_refused_not_passed_on(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    headers = CIMultiDict(
        [
            ("Authorization", f"Bearer {live.gateway_token}"),
            ("xero-tenant-id", AU_TENANT.tenant_id),
            ("xero-tenant-id", NZ_TENANT.tenant_id),
        ]
    )
    url = URL(str(world.listener) + "/api.xro/2.0/Invoices", encoded=True)
    async with world.http.get(url, headers=headers) as answer:
        assert answer.status == 403
        assert problem_type(await answer.json(content_type=None)) == "tenant-not-linked"


async def test_connections_lists_the_callers_organisation_only(world: World) -> None:
    ava = await world.session("ava@harbour.example", verified=False)
    nia = await world.session("nia@kauri.example", verified=False)
    for live, tenant in ((ava, AU_TENANT), (nia, NZ_TENANT)):
        status, body, _ = await world.call(live.gateway_token, "/Connections", tenant=None)
        assert status == 200
        assert [c["tenantId"] for c in body] == [tenant.tenant_id]
        assert set(body[0]) == {
            "id",
            "authEventId",
            "tenantId",
            "tenantType",
            "tenantName",
            "createdDateUtc",
            "updatedDateUtc",
        }
        assert body[0]["tenantType"] == "ORGANISATION"


@pytest.mark.parametrize(
    "path",
    ["/", "/api.xro", "/identity/connect/token", "/_gateway/login", "/api.xro/../connections"],
)
async def test_other_paths_are_not_found(world: World, path: str) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    status, body, _ = await world.call(live.gateway_token, path)
    assert status == 404
    assert problem_type(body) == "not-found"


async def test_a_body_sent_after_100_continue_reaches_xero(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    contact = AU_TENANT.contacts[0].contact_id
    invoice = {"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": contact}, "LineItems": []}]}
    status, body, _ = await world.call(
        live.gateway_token, "/api.xro/2.0/Invoices", method="POST", json=invoice, expect100=True
    )
    assert status == 200, body
    assert body["Invoices"][0]["Contact"]["ContactID"] == contact


async def test_a_browser_sees_the_listeners_refusals_as_a_page(world: World) -> None:
    headers = {"Accept": "text/html,application/xhtml+xml", "Sec-Fetch-Mode": "navigate"}
    async with world.http.get(str(world.listener) + "/", headers=headers) as answer:
        assert answer.status == 404
        assert answer.content_type == "text/html"
        assert "Not found" in await answer.text()


async def test_paths_match_without_regard_to_case(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    status, body, _ = await world.call(live.gateway_token, "/API.XRO/2.0/organisation")
    assert status == 200, body


# --- the MFA rule and refreshes ---------------------------------------------------------


async def test_an_unverified_session_uses_a_valid_token_but_may_not_refresh(world: World) -> None:
    live = await world.session("max@harbour.example", verified=False)
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Contacts"))[0] == 200
    await world.expire()
    calls = world.xero.counters.token_endpoint_calls
    status, body, _ = await world.call(live.gateway_token, "/api.xro/2.0/Contacts")
    assert status == 403
    assert problem_type(body) == "mfa-required"
    assert world.xero.counters.token_endpoint_calls == calls


async def test_an_unverified_session_is_held_back_once_the_deadline_passes(world: World) -> None:
    deadline = 1_798_722_000.0  # the shipped policy's: the end of 31 December 2026 in Sydney
    world.clock.set(deadline - 60)
    verified = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(verified.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    member = await world.session("max@harbour.example", verified=False)  # not enrolled
    assert (await world.call(member.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    world.clock.advance(60)  # the access token is still good; the policy now blocks him
    status, body, _ = await world.call(member.gateway_token, "/api.xro/2.0/Organisation")
    assert status == 403
    assert problem_type(body) == "mfa-required"
    assert "before it reaches the app" in body["detail"]
    status, _, _ = await world.call(member.gateway_token, "/connections", tenant=None)
    assert status == 403
    # A verified session is not held back by the deadline.
    assert (await world.call(verified.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200


async def test_a_thousand_calls_on_an_expired_token_refresh_it_once(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    await world.expire()
    calls = world.xero.counters.token_endpoint_calls
    answers = await asyncio.gather(
        *(world.call(live.gateway_token, "/api.xro/2.0/Organisation") for _ in range(1000))
    )
    assert world.xero.counters.token_endpoint_calls == calls + 1
    statuses = Counter(status for status, _, _ in answers)
    # The clock stands still, so the tenant's minute allows 60; the rest are held back by
    # the gateway with Retry-After, and none meets Xero's own 429.
    assert statuses == {200: 60, 429: 940}
    refused = [(b, h) for s, b, h in answers if s == 429]
    assert all(problem_type(b) == "rate-limited" and "Retry-After" in h for b, h in refused)
    assert world.xero.counters.rejections == 0


async def test_invalid_grant_answers_409_and_stays_so(world: World) -> None:
    grant = world.grants[AU_TENANT.tenant_id]
    vault_tokens = world.gateway.gateway.xero.custody.vault.open(grant)  # type: ignore[union-attr]
    # The refresh token is spent behind the gateway's back (as a leaked copy would be).
    identity = IdentityClient(XeroConfig(**world.xero.xero_settings()), world.http)
    await identity.refresh(vault_tokens.refresh_token, now=world.clock())
    # Past the access token's life and Xero's 30-minute grace for the spent refresh token.
    world.clock.set(grant.tokens.expires_at + 31 * 60)
    live = await world.session("ava@harbour.example", verified=True)
    for _ in range(2):
        status, body, _ = await world.call(live.gateway_token, "/api.xro/2.0/Organisation")
        assert status == 409
        assert problem_type(body) == "connection-needs-reconnect"


async def test_two_hundred_callers_on_one_tenant_wait_within_xeros_limits(
    world: World, manual_time: ManualTime
) -> None:
    # A listener whose callers may wait long enough for all 200 to be served (60 a minute),
    # on the clock the emulator counts by; its sleeps end as the test moves time on.
    services = world.gateway.services
    config = services.config
    patient = dataclasses.replace(
        services,
        config=dataclasses.replace(
            config,
            xero_proxy=dataclasses.replace(config.xero_proxy, max_wait=600.0, queue_size=200),
        ),
    )
    listener = xero_listener(patient, sleep=manual_time.sleep, port=0)
    await listener.start()
    try:
        live = await world.session("ava@harbour.example", verified=True)
        base = listener.url

        async def one() -> int:
            url = URL(base + "/api.xro/2.0/Contacts", encoded=True)
            headers = {
                "Authorization": f"Bearer {live.gateway_token}",
                "xero-tenant-id": AU_TENANT.tenant_id,
            }
            async with http.get(url, headers=headers) as answer:
                await answer.read()
                return answer.status

        # All 200 at once: one connection each.
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        calls = [asyncio.create_task(one()) for _ in range(200)]
        for _ in range(10_000):
            _, pending = await asyncio.wait(calls, timeout=0.05)
            if not pending:
                break
            # Time moves only while no call is between the governor and Xero: the governor
            # counts a call when it lets it go, the emulator when it arrives.
            if listener.custody.governor.budget(AU_TENANT.tenant_id).in_flight == 0:
                await manual_time.step(1.0)
        statuses = Counter(task.result() for task in calls)
        await http.close()
    finally:
        await listener.stop()
    counters = world.xero.counters
    tenant = AU_TENANT.tenant_id
    assert statuses == {200: 200}
    assert counters.max_in_flight[tenant] <= 5
    assert counters.max_per_minute[tenant] <= 60
    assert counters.rejections == 0
    assert world.clock() - START >= 180  # 200 calls at 60 a minute took over three minutes


# --- Xero's failures --------------------------------------------------------------------


async def test_a_5xx_is_tried_again_for_a_get(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    world.xero.switches.fail_next(2, on="api", status=503)
    status, body, _ = await world.call(live.gateway_token, "/api.xro/2.0/Contacts")
    assert status == 200, body


async def test_a_5xx_is_passed_on_for_a_post_without_idempotency_key(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    world.xero.switches.fail_next(1, on="api", status=503)
    contact = AU_TENANT.contacts[0].contact_id
    invoice = {"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": contact}, "LineItems": []}]}
    status, _, _ = await world.call(
        live.gateway_token, "/api.xro/2.0/Invoices", method="POST", json=invoice
    )
    assert status == 503
    # Tried once: a second attempt would have met no failure and answered 200.
    world.xero.switches.fail_next(1, on="api", status=503)
    status, body, _ = await world.call(
        live.gateway_token,
        "/api.xro/2.0/Invoices",
        method="POST",
        json=invoice,
        headers={"Idempotency-Key": "k-1"},
    )
    assert status == 200, body


async def test_xero_unreachable_gives_502_and_a_hang_504(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    world.xero.switches.hang_next(10, on="api")
    status, body, _ = await world.call(live.gateway_token, "/api.xro/2.0/Contacts")
    world.xero.switches.release()
    assert status == 504
    assert problem_type(body) == "xero-timeout"


# --- the rate budget on the connections page ------------------------------------------


async def _connections_page(gateway_url: URL, world: World, email: str) -> str:
    """The connections page at ``gateway_url`` as ``email`` sees it, signed in and verified."""
    running = dataclasses.replace(world.gateway, url=gateway_url)
    async with await signed_in(running, email) as browser:
        await verify(running, browser)
        page = await browser.get("/_gateway/xero", headers=HTML)
        assert page.status == 200
        return await page.text()


def _budget_shown(text: str, tenant_id: str) -> str:
    section = text.split(f'data-tenant="{tenant_id}"', 1)[1].split("</section>", 1)[0]
    found = re.search(r'<dd class="rate-budget">([^<]*)</dd>', section)
    assert found is not None, section
    return html.unescape(found.group(1))


async def test_the_connections_page_shows_the_listeners_rate_budget(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    for _ in range(3):
        assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    text = await _connections_page(world.gateway.url, world, "ava@harbour.example")
    shown = _budget_shown(text, AU_TENANT.tenant_id)
    # Three calls this minute of the 60; the day as Xero's X-DayLimit-Remaining says.
    day = world.xero.state.tenants[AU_TENANT.tenant_id].day_limit - 3
    assert shown == (
        f"57 calls left this minute, {day:,} today (standard tier); 0 in flight, 0 queued"
    )


async def test_the_rate_budget_shows_a_block_xero_asked_for(world: World) -> None:
    # Xero's minute is smaller than the governor thinks: the second call meets Xero's 429,
    # whose Retry-After holds the tenant back; the caller's deadline cannot wait for it.
    live = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    world.xero.state.limits = dataclasses.replace(world.xero.state.limits, minute_limit=1)
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 429
    budget = world.gateway.gateway.xero.custody.governor.budget(AU_TENANT.tenant_id)  # type: ignore[union-attr]
    assert budget.blocked_until is not None
    until = dt.datetime.fromtimestamp(budget.blocked_until, dt.UTC)
    text = await _connections_page(world.gateway.url, world, "ava@harbour.example")
    assert _budget_shown(text, AU_TENANT.tenant_id).endswith(
        f"; held back by Xero until {until:%H:%M:%S} UTC"
    )


async def test_a_process_without_the_listener_shows_the_budget_the_listener_kept(
    world: World,
) -> None:
    # A front served from services without the governor's hook, on the same store: as a
    # gateway process that does not run the Xero listener.
    services = dataclasses.replace(world.gateway.services, xero_rate_budget=None)
    front = front_listener(services)
    await front.start()
    try:
        text = await _connections_page(URL(front.url), world, "ava@harbour.example")
        assert _budget_shown(text, AU_TENANT.tenant_id) == "not known in this process"
        live = await world.session("ava@harbour.example", verified=True)
        assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
        listener = world.gateway.gateway.xero  # type: ignore[union-attr]
        assert listener is not None
        await listener.keep_budgets()
        text = await _connections_page(URL(front.url), world, "ava@harbour.example")
    finally:
        await front.stop()
    counted = dt.datetime.fromtimestamp(world.clock(), dt.UTC)
    assert _budget_shown(text, AU_TENANT.tenant_id) == (
        listener.rate_budget(AU_TENANT.tenant_id)
        + f" (as counted at {counted:%Y-%m-%d %H:%M:%S} UTC)"
    )


async def test_the_listener_keeps_the_budgets_of_tenants_it_called_since(world: World) -> None:
    listener = world.gateway.gateway.xero  # type: ignore[union-attr]
    assert listener is not None
    kept = world.gateway.services.store.xero_budgets
    live = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    await listener.keep_budgets()
    first = (await kept.for_tenants([AU_TENANT.tenant_id]))[AU_TENANT.tenant_id]
    assert first.counted_at == world.clock()
    # No call since: what is kept stays (another, busier process's count would too), though
    # this governor's minute has filled up again.
    world.clock.set(world.clock() + 100)
    await listener.keep_budgets()
    assert (await kept.for_tenants([AU_TENANT.tenant_id]))[AU_TENANT.tenant_id] == first
    assert listener.rate_budget(AU_TENANT.tenant_id) != first.words
    # A call: written again, with the time it was counted.
    assert (await world.call(live.gateway_token, "/api.xro/2.0/Organisation"))[0] == 200
    await listener.keep_budgets()
    second = (await kept.for_tenants([AU_TENANT.tenant_id]))[AU_TENANT.tenant_id]
    assert (second.words, second.counted_at) == (
        listener.rate_budget(AU_TENANT.tenant_id),
        world.clock(),
    )


# --- service keys -----------------------------------------------------------------------


async def test_a_service_key_refreshes_only_within_the_window(world: World) -> None:
    raw, _, _ = await world.service_key("nightly")
    assert (await world.call(raw, "/api.xro/2.0/Contacts"))[0] == 200
    await world.expire()
    status, body, _ = await world.call(raw, "/api.xro/2.0/Contacts")
    assert status == 403  # no verified member has used the connection
    assert problem_type(body) == "mfa-required"
    verified = await world.session("ava@harbour.example", verified=True)
    assert (await world.call(verified.gateway_token, "/connections", tenant=None))[0] == 200
    assert (await world.call(verified.gateway_token, "/api.xro/2.0/Contacts"))[0] == 200
    await world.expire()  # the refreshed token nears its end; the member used it moments ago
    assert (await world.call(raw, "/api.xro/2.0/Contacts"))[0] == 200
    world.clock.advance(24 * 3600)  # long past any window, and the token's life
    status, body, _ = await world.call(raw, "/api.xro/2.0/Contacts")
    assert status == 403
    assert problem_type(body) == "mfa-required"


async def test_a_service_keys_warm_calls_run_no_sql_and_a_revoked_key_stops_soon(
    world: World,
) -> None:
    services = world.gateway.services
    raw, key_id, org = await world.service_key("sync")
    assert (await world.call(raw, "/api.xro/2.0/Organisation"))[0] == 200
    db = services.store.db
    before = db.statement_count
    assert (await world.call(raw, "/api.xro/2.0/Organisation"))[0] == 200
    assert db.statement_count == before
    assert await revoke_service_key(services.store, key_id, org_id=org, now=world.clock(), by="t")
    world.clock.advance(SERVICE_KEY_RECHECK_SECONDS)
    status, body, _ = await world.call(raw, "/api.xro/2.0/Organisation")
    assert status == 401
    assert problem_type(body) == "unauthenticated"


# --- xero-python, unmodified ------------------------------------------------------------


def sdk_client(token: str) -> ApiClient:
    """An SDK client as an app would build one for the listener: the gateway token as its
    access token, never expiring (the gateway renews Xero's)."""
    configuration = Configuration()
    configuration.oauth2_token = OAuth2Token(client_id="app", client_secret="")
    client = ApiClient(configuration, pool_threads=1)
    stored = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 1800,  # without expires_at the SDK never tries to refresh it
        "scope": ["accounting.transactions"],
    }

    @client.oauth2_token_getter  # type: ignore[untyped-decorator]
    def get() -> dict[str, Any]:
        return stored

    @client.oauth2_token_saver  # type: ignore[untyped-decorator]
    def save(new: dict[str, Any]) -> None:
        stored.update(new)

    return client


async def off_loop(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


async def test_xero_python_works_through_the_listener(world: World) -> None:
    live = await world.session("ava@harbour.example", verified=True)
    client = sdk_client(live.gateway_token)
    base = str(world.listener)
    connections = await off_loop(IdentityApi(client, base_url=base).get_connections)
    assert [c.tenant_id for c in connections] == [AU_TENANT.tenant_id]
    api = AccountingApi(client, base_url=base + "/api.xro/2.0")
    tenant = AU_TENANT.tenant_id
    org = (await off_loop(lambda: api.get_organisations(tenant))).organisations[0]
    assert org.country_code.value == "AU"
    invoices = (await off_loop(lambda: api.get_invoices(tenant))).invoices
    assert len(invoices) == 2
    contact = invoices[0].contact.contact_id
    new = Invoices(
        invoices=[
            Invoice(
                type="ACCREC",
                contact=Contact(contact_id=contact),
                line_items=[LineItem(description="Tax return", quantity=1.0, unit_amount=350.0)],
            )
        ]
    )
    made = (await off_loop(lambda: api.create_invoices(tenant, new))).invoices[0]
    assert made.total == 385.0
    with pytest.raises(HTTPStatusException) as refused:
        await off_loop(lambda: api.get_invoices(NZ_TENANT.tenant_id))
    assert refused.value.status == 403


# --- the sample app ---------------------------------------------------------------------


async def test_the_sample_app_lists_invoices_through_the_listener(
    world: World, sample_settings: SampleSettings
) -> None:
    from tests.conftest import sign_in

    sample_settings.xero_url = str(world.listener)
    async with world.gateway.client() as browser:
        await sign_in(browser, email="max@harbour.example")
        page = await (await browser.get("/xero/invoices")).text()
    assert f'data-tenant="{AU_TENANT.tenant_id}"' in page
    assert NZ_TENANT.tenant_id not in page  # the other organisation's tenant
    assert page.count("<tr><td>") == 2  # the tenant's two invoices
    assert "X-Gateway-Token" in page

    await world.expire()  # an unverified session may not have the token refreshed
    async with world.gateway.client() as browser:
        await sign_in(browser, email="max@harbour.example")
        page = await (await browser.get("/xero/invoices")).text()
    assert 'data-status="403"' in page
    assert "/mfa-required" in page
    assert "/_gateway/mfa/verify?next=/xero/invoices" in page
