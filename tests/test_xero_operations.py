"""Operating Xero connections: `xero-gateway xero status|disconnect` in a subprocess and the
admin API's list and disconnect, against a gateway connected through the emulator."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.admin.tokens import ORGS_WRITE, REPORTS_READ, create_admin_token
from gateway.sandbox.demo import write_config
from gateway.sandbox.xero_emulator import AU_TENANT, XeroEmulator
from tests.conftest import SECRET, GatewayFactory, RunningGateway
from tests.xero_flow import connect, signed_in, xero_gateway

PRINCIPAL = "ava@harbour.example"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory, xero: XeroEmulator) -> RunningGateway:
    xero.state.consent_tenants = (AU_TENANT.tenant_id,)
    running = await xero_gateway(make_gateway, xero)
    async with await signed_in(running, PRINCIPAL) as client:
        assert (await connect(client)).status == 303
    return running


async def _org_id(gateway: RunningGateway) -> str:
    user = await gateway.services.store.users.find_by_email(PRINCIPAL)
    assert user is not None
    return user.org_id


def _config(tmp_path: Path, gateway: RunningGateway, xero: XeroEmulator) -> Path:
    path = tmp_path / "cli.toml"
    write_config(
        path,
        {
            "upstream": {"url": "http://127.0.0.1:9"},
            "store": {"path": gateway.services.config.store.path},
            "security": {"secret_key": SECRET, "cookie_secure": False},
            "xero": {
                **xero.xero_settings(),
                "redirect_uri": gateway.services.config.xero.redirect_uri,
            },
        },
    )
    return path


async def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # In a thread: the emulator answers the subprocess from this test's event loop.
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "gateway.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


async def test_the_cli_shows_and_disconnects_a_connection(
    gateway: RunningGateway, xero: XeroEmulator, tmp_path: Path
) -> None:
    config = _config(tmp_path, gateway, xero)
    status = await _cli(config, "xero", "status")
    assert status.returncode == 0, status.stderr
    assert AU_TENANT.name in status.stdout
    assert AU_TENANT.tenant_id in status.stdout
    line = next(x for x in status.stdout.splitlines() if AU_TENANT.tenant_id in x)
    assert " AU " in line
    assert "active" in line
    assert "never" in line  # last refresh
    assert "(valid)" in line
    org_id = await _org_id(gateway)
    unknown = await _cli(config, "xero", "disconnect", "nope", "--org", org_id)
    assert unknown.returncode == 1
    assert "no Xero connection" in unknown.stderr
    done = await _cli(config, "xero", "disconnect", AU_TENANT.tenant_id, "--org", org_id)
    assert done.returncode == 0, done.stderr
    assert "disconnected" in done.stdout
    assert xero.state.grants.connections == {}
    assert xero.state.grants.grants == {}
    [tenant] = await gateway.services.store.tenants.for_org(org_id)
    assert not tenant.active
    again = await _cli(config, "xero", "status", "--org", org_id)
    assert "disconnected" in again.stdout
    events = [e for e in await gateway.services.store.audit.list() if e.kind == "xero.disconnected"]
    assert [e.actor for e in events] == ["cli"]


async def test_the_cli_shows_the_budget_the_listener_last_counted(
    gateway: RunningGateway, xero: XeroEmulator, tmp_path: Path
) -> None:
    services = gateway.services
    user = await services.store.users.find_by_email(PRINCIPAL)
    assert user is not None
    _, live = await services.sessions.create(user, client_addr="127.0.0.1")
    _, live = await services.sessions.mark_verified(live, "totp", gateway.clock())
    assert gateway.gateway is not None
    listener = gateway.gateway.xero
    assert listener is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            listener.url + "/api.xro/2.0/Organisation",
            headers={
                "Authorization": f"Bearer {live.gateway_token}",
                "xero-tenant-id": AU_TENANT.tenant_id,
            },
        ) as answer,
    ):
        assert answer.status == 200
    await listener.keep_budgets()
    status = await _cli(_config(tmp_path, gateway, xero), "xero", "status")
    assert status.returncode == 0, status.stderr
    line = next(x for x in status.stdout.splitlines() if AU_TENANT.tenant_id in x)
    # Xero's own count (the connect read Organisation too) corrects the governor's one call.
    assert "58 calls left this minute, 4,998 today (standard tier)" in line
    assert "as counted at" in line


async def test_the_admin_api_lists_and_disconnects(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    reader, _ = await create_admin_token(
        store, name="r", scopes=[REPORTS_READ], ttl_seconds=3600, now=gateway.clock(), by="t"
    )
    writer, _ = await create_admin_token(
        store, name="w", scopes=[ORGS_WRITE], ttl_seconds=3600, now=gateway.clock(), by="t"
    )
    base = f"/_gateway/admin/api/orgs/{org_id}/xero"
    async with gateway.client() as client:
        listing = await client.get(base, headers={"Authorization": f"Bearer {reader}"})
        assert listing.status == 200
        [row] = (await listing.json())["connections"]
        assert (row["tenant_id"], row["country_code"], row["status"], row["source"]) == (
            AU_TENANT.tenant_id,
            "AU",
            "active",
            "xero",
        )
        grant_id = row["grant_id"]
        forbidden = await client.post(
            f"{base}/{grant_id}/disconnect", headers={"Authorization": f"Bearer {reader}"}
        )
        assert forbidden.status == 403
        auth = {"Authorization": f"Bearer {writer}"}
        missing = await client.post(f"{base}/xgr_nope/disconnect", headers=auth)
        assert missing.status == 404
        elsewhere = await client.post(
            f"/_gateway/admin/api/orgs/org_nope/xero/{grant_id}/disconnect", headers=auth
        )
        assert elsewhere.status == 404
        xero.switches.fail_next(1, on="token")
        outage = await client.post(f"{base}/{grant_id}/disconnect", headers=auth)
        assert outage.status == 503
        assert (await outage.json())["type"].endswith("/xero-unavailable")
        assert (await store.xero.require(grant_id)).status == "active"
        done = await client.post(f"{base}/{grant_id}/disconnect", headers=auth)
        assert done.status == 200
        body = await done.json()
        assert body["disconnected"] is True
        assert body["connections"][0]["status"] == "disconnected"
        again = await client.post(f"{base}/{grant_id}/disconnect", headers=auth)
        assert (await again.json())["disconnected"] is False
    assert xero.state.grants.connections == {}
    [event] = [e for e in await store.audit.list() if e.kind == "xero.disconnected"]
    assert event.actor is not None
    assert event.actor.startswith("atk_")


async def test_explain_and_readiness_name_the_connection_a_scope_came_from(
    gateway: RunningGateway, xero: XeroEmulator
) -> None:
    store = gateway.services.store
    org_id = await _org_id(gateway)
    [connection] = await store.xero.connections_for_org(org_id)
    token, _ = await create_admin_token(
        store, name="r", scopes=[REPORTS_READ], ttl_seconds=3600, now=gateway.clock(), by="t"
    )
    auth = {"Authorization": f"Bearer {token}"}
    expected = {
        "tenant_id": AU_TENANT.tenant_id,
        "name": AU_TENANT.name,
        "country_code": "AU",
        "source": "xero",
        "grant_id": connection.grant_id,
        "connection_id": connection.id,
    }
    async with gateway.client() as client:
        explained = await client.get(
            "/_gateway/admin/api/decisions/explain",
            params={"user": "max@harbour.example"},
            headers=auth,
        )
        body = await explained.json()
        [scope] = body["policies"]
        assert scope["applies"] is True
        assert scope["came_from"] == [expected]
        report = await client.get("/_gateway/admin/api/reports/readiness", headers=auth)
        [policy] = (await report.json())["policies"]
        [org] = policy["orgs"]
        assert org["org_id"] == org_id
        assert org["came_from"] == [expected]
