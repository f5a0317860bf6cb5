"""The Xero facts schedule against the emulator: a connection removed at Xero is marked and its
tenant unlinked, a changed country changes the scope, an outage or an expired access token
changes nothing (and nothing is refreshed)."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.runtime.background import recheck_xero
from gateway.sandbox.xero_emulator import AU_TENANT, NZ_TENANT, XeroEmulator
from gateway.store import Store
from tests.conftest import GatewayFactory, RunningGateway
from tests.xero_flow import HTML, connect, signed_in, xero_gateway

PRINCIPAL, MEMBER = "ava@harbour.example", "max@harbour.example"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, xero: XeroEmulator) -> RunningGateway:
    running = await xero_gateway(make_gateway, xero)
    async with await signed_in(running, PRINCIPAL) as client:
        assert (await connect(client)).status == 303  # both demo tenants
    return running


async def _tenants(store: Store) -> dict[str, tuple[str, bool]]:
    user = await store.users.find_by_email(PRINCIPAL)
    assert user is not None
    return {
        t.tenant_id: (t.country_code, t.active) for t in await store.tenants.for_org(user.org_id)
    }


async def _statuses(store: Store) -> dict[str, str]:
    user = await store.users.find_by_email(PRINCIPAL)
    assert user is not None
    return {c.id: c.status for c in await store.xero.connections_for_org(user.org_id)}


async def _member_lands_on(gateway: RunningGateway) -> str:
    async with await signed_in(gateway, MEMBER) as client:
        answer = await client.get("/", headers=HTML, allow_redirects=False)
        return answer.headers.get("Location", str(answer.status))


async def test_a_connection_removed_at_xero_is_marked_and_its_tenant_unlinked(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    assert await _tenants(store) == {
        AU_TENANT.tenant_id: ("AU", True),
        NZ_TENANT.tenant_id: ("NZ", True),
    }
    assert (await _member_lands_on(gateway)).startswith("/_gateway/mfa/prompt")
    au = next(
        c for c in xero.state.grants.connections.values() if c.tenant_id == AU_TENANT.tenant_id
    )
    del xero.state.grants.connections[au.id]  # the user disconnected the app at Xero
    gateway.clock.advance(60)
    found = await recheck_xero(gateway.services)
    assert found.removed == (au.id,)
    assert (await _statuses(store))[au.id] == "removed_at_xero"
    assert await _tenants(store) == {
        AU_TENANT.tenant_id: ("AU", False),
        NZ_TENANT.tenant_id: ("NZ", True),
    }
    kinds = [e.kind for e in await store.audit.list()]
    assert "xero.connection_removed" in kinds
    assert await _member_lands_on(gateway) == "200"  # out of scope within the interval
    again = await recheck_xero(gateway.services)
    assert (again.removed, again.linked) == ((), ())


async def test_a_changed_country_changes_the_scope(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    xero.state.tenants[AU_TENANT.tenant_id] = dataclasses.replace(AU_TENANT, country_code="NZ")
    gateway.clock.advance(60)
    found = await recheck_xero(gateway.services)
    assert found.linked == (AU_TENANT.tenant_id,)
    assert (await _tenants(store))[AU_TENANT.tenant_id] == ("NZ", True)
    assert await _member_lands_on(gateway) == "200"
    xero.state.tenants[NZ_TENANT.tenant_id] = dataclasses.replace(NZ_TENANT, country_code="AU")
    await recheck_xero(gateway.services)
    assert (await _member_lands_on(gateway)).startswith("/_gateway/mfa/prompt")


async def test_an_outage_or_an_expired_token_changes_nothing(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    before = await _tenants(store)
    xero.state.grants.connections.clear()
    xero.state.tenants[AU_TENANT.tenant_id] = dataclasses.replace(AU_TENANT, country_code="NZ")
    xero.switches.fail_next(1, on="api")
    found = await recheck_xero(gateway.services)
    assert (found.failed, found.removed, found.linked) == (1, (), ())
    assert await _tenants(store) == before
    # Once the access token has expired, the schedule does not refresh it: it waits.
    calls = xero.counters.token_endpoint_calls
    gateway.clock.advance(31 * 60)
    found = await recheck_xero(gateway.services)
    assert (found.skipped, found.removed) == (1, ())
    assert xero.counters.token_endpoint_calls == calls
    assert await _tenants(store) == before
    assert set((await _statuses(store)).values()) == {"active"}
