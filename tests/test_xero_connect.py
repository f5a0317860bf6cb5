"""Connecting Xero over HTTP: a real gateway and the Xero emulator on loopback, a real SQLite
file. The flow, who may use it, every way a callback can go wrong (nothing stored), and
disconnecting (revoked and deleted at Xero, tenants unlinked)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from yarl import URL

from gateway.sandbox.xero_emulator import AU_TENANT, XeroEmulator
from gateway.store import AuditEntry
from tests.conftest import CSRF_FIELD, GatewayFactory, RunningGateway
from tests.xero_flow import (
    HTML,
    JSON,
    back,
    connect,
    consent,
    signed_in,
    to_xero,
    verify,
    xero_gateway,
)

PRINCIPAL, MEMBER = "ava@harbour.example", "max@harbour.example"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, xero: XeroEmulator) -> RunningGateway:
    xero.state.consent_tenants = (AU_TENANT.tenant_id,)
    return await xero_gateway(make_gateway, xero)


async def _org_id(gateway: RunningGateway, email: str = PRINCIPAL) -> str:
    user = await gateway.services.store.users.find_by_email(email)
    assert user is not None
    return user.org_id


async def _nothing_stored(gateway: RunningGateway) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    assert await store.xero.for_org(org_id) == []
    assert await store.tenants.for_org(org_id) == []


async def _lands_on(gateway: RunningGateway, email: str, path: str = "/") -> str:
    async with await signed_in(gateway, email) as client:
        answer = await client.get(path, headers=HTML, allow_redirects=False)
        return answer.headers.get("Location", str(answer.status))


async def test_a_principal_connects_and_the_policy_then_applies_to_the_org(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    assert await _lands_on(gateway, MEMBER) == "200"  # no tenant: out of scope
    async with await signed_in(gateway, PRINCIPAL) as client:
        authorize = await to_xero(client)
        assert str(authorize).startswith(xero.authorize_url)
        assert authorize.query["code_challenge_method"] == "S256"
        assert "offline_access" in authorize.query["scope"].split()
        answer = await back(client, await consent(client, authorize))
        assert answer.status == 303
        assert answer.headers["Location"] == "/_gateway/xero"
        page = await client.get("/_gateway/xero", headers=HTML)
        text = await page.text()
    assert page.status == 200
    assert AU_TENANT.name in text
    assert '<dd class="country">AU' in text
    assert "active" in text
    org_id = await _org_id(gateway)
    [grant] = await store.xero.for_org(org_id)
    assert grant.status == "active"
    [connection] = await store.xero.connections(grant.id)
    assert connection.tenant_id == AU_TENANT.tenant_id
    assert connection.id in xero.state.grants.connections
    [tenant] = await store.tenants.for_org(org_id)
    assert (tenant.tenant_id, tenant.country_code, tenant.source) == (
        AU_TENANT.tenant_id,
        "AU",
        "xero",
    )
    kinds = [e.kind for e in await store.audit.list()]
    assert "xero.connected" in kinds
    assert "org.tenant_linked" in kinds
    # The policy applies to the organisation now: its member is prompted, and the vault lets
    # a service key refresh within the policy's window after a verified use.
    assert (await _lands_on(gateway, MEMBER)).startswith("/_gateway/mfa/prompt")
    book = gateway.services.decider.book
    assert book.service_refresh_window(org_id, gateway.clock()) == timedelta(hours=8)
    nz = await _org_id(gateway, "nia@kauri.example")
    assert book.service_refresh_window(nz, gateway.clock()) is None


async def test_a_member_may_not_connect_or_disconnect(gateway: RunningGateway) -> None:
    async with await signed_in(gateway, MEMBER) as client:
        answer = await client.get("/_gateway/xero/connect", headers=JSON, allow_redirects=False)
        assert answer.status == 403
        assert (await answer.json())["type"].endswith("/xero-principals-only")
        page = await client.get("/_gateway/xero/connect", headers=HTML, allow_redirects=False)
        assert page.status == 403
        assert "principal" in await page.text()
        listing = await client.get("/_gateway/xero", headers=HTML)
        text = await listing.text()
        assert listing.status == 200
        assert "connect-xero" not in text
        csrf = CSRF_FIELD.search(await (await client.get("/_gateway/logout")).text())
        assert csrf is not None
        answer = await client.post(
            "/_gateway/xero/disconnect",
            data={"csrf": csrf.group(1), "grant_id": "xgr_x"},
            headers=JSON,
            allow_redirects=False,
        )
        assert answer.status == 403
    await _nothing_stored(gateway)


async def test_nobody_signed_in_is_sent_to_sign_in(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        for path in ("/_gateway/xero", "/_gateway/xero/connect", "/_gateway/xero/callback"):
            answer = await client.get(path, headers=HTML, allow_redirects=False)
            assert answer.status == 303
            assert answer.headers["Location"].startswith("/_gateway/login?next=")


async def test_a_principal_in_scope_connects_only_after_the_step_up(
    gateway: RunningGateway,
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    await store.tenants.link(
        org_id=org_id,
        tenant_id="manual-au",
        name="By hand",
        country_code="AU",
        now=gateway.clock(),
        audit=AuditEntry(actor="test"),
    )
    await gateway.services.decider.book.refresh()
    async with await signed_in(gateway, PRINCIPAL) as client:
        answer = await client.get("/_gateway/xero/connect", allow_redirects=False)
        assert answer.status == 303
        assert answer.headers["Location"] == "/_gateway/mfa/verify?next=/_gateway/xero"
        await verify(gateway, client)
        assert (await connect(client)).status == 303
    assert len(await store.xero.for_org(org_id)) == 1


async def test_a_replayed_forged_or_foreign_state_stores_nothing(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    async with await signed_in(gateway, PRINCIPAL) as client:
        callback = await consent(client, await to_xero(client))
        forged = callback.update_query(state="x" * 43)
        answer = await back(client, forged)
        assert answer.status == 400
        assert "not started here" in await answer.text()
        async with await signed_in(gateway, PRINCIPAL) as other:
            answer = await back(other, callback)
            assert answer.status == 400
            assert "another session" in await answer.text()
        await _nothing_stored(gateway)
        assert (await back(client, callback)).status == 303
        replayed = await back(client, callback)
        assert replayed.status == 400
        assert "already been completed" in await replayed.text()
        no_state = await back(client, URL("/_gateway/xero/callback?code=abc"))
        assert no_state.status == 400
    assert len(await gateway.services.store.xero.for_org(await _org_id(gateway))) == 1


async def test_a_principal_who_declines_at_xero_is_told_and_nothing_is_stored(
    gateway: RunningGateway,
) -> None:
    async with await signed_in(gateway, PRINCIPAL) as client:
        authorize = await to_xero(client)
        declined = URL("/_gateway/xero/callback").with_query(
            state=authorize.query["state"], error="access_denied"
        )
        answer = await back(client, declined)
        assert answer.status == 400
        assert "chose not to allow access" in await answer.text()
        # The state is spent: a late code cannot use it.
        late = declined.with_query(state=authorize.query["state"], code="c")
        assert (await back(client, late)).status == 400
    await _nothing_stored(gateway)


@pytest.mark.parametrize("fault", ["503", "dropped"])
async def test_an_outage_at_the_code_exchange_stores_nothing(
    gateway: RunningGateway, xero: XeroEmulator, fault: str
) -> None:
    async with await signed_in(gateway, PRINCIPAL) as client:
        callback = await consent(client, await to_xero(client))
        if fault == "503":
            xero.switches.fail_next(1, on="token")
        else:
            xero.switches.drop_next_token_responses(1)
        answer = await back(client, callback)
        assert answer.status == 503
        assert "Xero did not answer" in await answer.text()
    await _nothing_stored(gateway)


async def test_an_organisation_xero_will_not_read_stores_nothing_and_revokes_the_consent(
    make_gateway: GatewayFactory, xero: XeroEmulator
) -> None:
    # Without accounting.settings Xero refuses the Organisation read (401).
    gateway = await xero_gateway(make_gateway, xero, {"scopes": ["openid", "email"]})
    async with await signed_in(gateway, PRINCIPAL) as client:
        answer = await connect(client)
        assert answer.status == 502
        assert "Xero refused while reading the organisation" in await answer.text()
    await _nothing_stored(gateway)
    assert xero.state.grants.grants == {}  # the fresh refresh token was revoked
    assert xero.state.grants.connections == {}


async def test_an_outage_reading_the_tenants_stores_nothing(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    async with await signed_in(gateway, PRINCIPAL) as client:
        callback = await consent(client, await to_xero(client))
        xero.switches.fail_next(1, on="api")
        answer = await back(client, callback)
        assert answer.status == 503
        json_answer = await client.get("/_gateway/xero", headers=JSON)
        assert json_answer.status == 200
    await _nothing_stored(gateway)
    assert xero.state.grants.grants == {}


async def test_disconnect_revokes_and_deletes_at_xero_and_unlinks(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    async with await signed_in(gateway, PRINCIPAL) as client:
        assert (await connect(client)).status == 303
        [grant] = await store.xero.for_org(org_id)
        page = await (await client.get("/_gateway/xero", headers=HTML)).text()
        csrf = CSRF_FIELD.search(page)
        assert csrf is not None
        form = {"csrf": csrf.group(1), "grant_id": grant.id}
        # In scope now: disconnecting asks for a fresh second factor first.
        answer = await client.post("/_gateway/xero/disconnect", data=form, allow_redirects=False)
        assert answer.status == 303
        assert answer.headers["Location"].startswith("/_gateway/mfa/verify?next=/_gateway/xero")
        assert xero.state.grants.connections != {}
        await verify(gateway, client)
        page = await (await client.get("/_gateway/xero", headers=HTML)).text()
        csrf = CSRF_FIELD.search(page)
        assert csrf is not None
        bad = await client.post(
            "/_gateway/xero/disconnect",
            data={"csrf": "forged", "grant_id": grant.id},
            allow_redirects=False,
        )
        assert bad.status == 403
        form = {"csrf": csrf.group(1), "grant_id": grant.id}
        xero.switches.fail_next(1, on="token")  # the revocation fails: nothing changes here
        answer = await client.post(
            "/_gateway/xero/disconnect", data=form, headers=HTML, allow_redirects=False
        )
        assert answer.status == 503
        assert (await store.xero.require(grant.id)).status == "active"
        answer = await client.post("/_gateway/xero/disconnect", data=form, allow_redirects=False)
        assert answer.status == 303
        unknown = await client.post(
            "/_gateway/xero/disconnect",
            data={**form, "grant_id": "xgr_nope"},
            headers=JSON,
            allow_redirects=False,
        )
        assert unknown.status == 404
        text = await (await client.get("/_gateway/xero", headers=HTML)).text()
        assert "disconnected" in text
    assert xero.state.grants.connections == {}
    assert xero.state.grants.grants == {}
    assert (await store.xero.require(grant.id)).status == "disconnected"
    [tenant] = await store.tenants.for_org(org_id)
    assert not tenant.active
    assert "xero.disconnected" in [e.kind for e in await store.audit.list()]
    assert await _lands_on(gateway, MEMBER) == "200"  # out of scope again


async def test_a_reconnect_takes_over_the_connection(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    async with await signed_in(gateway, PRINCIPAL) as client:
        assert (await connect(client)).status == 303
        gateway.clock.advance(60)
        await verify(gateway, client)
        assert (await connect(client)).status == 303
    first, second = await store.xero.for_org(org_id)
    assert (first.status, second.status) == ("disconnected", "active")
    [connection] = await store.xero.connections_for_org(org_id)
    assert connection.grant_id == second.id
    [tenant] = await store.tenants.for_org(org_id)
    assert tenant.active


async def test_a_manual_link_stays_the_override(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    await store.tenants.link(
        org_id=org_id,
        tenant_id=AU_TENANT.tenant_id,
        name="Set by hand",
        country_code="NZ",
        now=gateway.clock(),
    )
    async with await signed_in(gateway, PRINCIPAL) as client:
        assert (await connect(client)).status == 303
    [tenant] = await store.tenants.for_org(org_id)
    assert (tenant.country_code, tenant.source) == ("NZ", "manual")
    assert len(await store.xero.connections_for_org(org_id)) == 1


async def test_a_connection_waiting_for_a_reconnect_is_shown_and_reconnected(
    gateway: RunningGateway,
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    async with await signed_in(gateway, PRINCIPAL) as client:
        assert (await connect(client)).status == 303
        [old] = await store.xero.for_org(org_id)
        assert await store.xero.mark(old.id, "needs_reconnect", now=gateway.clock())
        text = await (await client.get("/_gateway/xero", headers=HTML)).text()
        assert '<dd class="status">needs reconnect</dd>' in text
        assert ">Reconnect</a>" in text
        gateway.clock.advance(60)
        await verify(gateway, client)
        assert (await connect(client)).status == 303
        text = await (await client.get("/_gateway/xero", headers=HTML)).text()
    assert (await store.xero.require(old.id)).status == "disconnected"
    [connection] = await store.xero.connections_for_org(org_id)
    assert connection.status == "active"
    assert connection.grant_id != old.id
    assert '<dd class="status">active</dd>' in text


async def test_odd_requests_get_clear_answers_never_a_500(gateway: RunningGateway) -> None:
    async with await signed_in(gateway, PRINCIPAL) as client:
        authorize = await to_xero(client)
        state = authorize.query["state"]
        for query in (
            {"state": state, "code": "c" * 5000},
            {"state": "s" * 5000, "code": "c"},
            {"state": state, "error": "x" * 5000},
            {"state": "", "code": ""},
        ):
            answer = await back(client, URL("/_gateway/xero/callback").with_query(query))
            assert answer.status == 400, query
        for method in ("GET", "PUT"):
            answer = await client.request(
                method, "/_gateway/xero/disconnect", headers=JSON, allow_redirects=False
            )
            assert 400 <= answer.status < 500
        empty = await client.post("/_gateway/xero/disconnect", data={}, allow_redirects=False)
        assert empty.status == 403  # no CSRF token
    await _nothing_stored(gateway)
