"""A gateway with Xero custody in front of the Xero emulator, for the Xero benchmark: the
demo accounts, the AU tenant connected through a real consent at the emulator and stored by
the vault, and an MFA-verified session whose gateway token the app would be sent."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from gateway.accounts.passwords import Passwords
from gateway.clock import Clock, system_clock
from gateway.config import Config, XeroConfig, build_config
from gateway.runtime.runner import Gateway
from gateway.sandbox.demo import demo_settings, seed_demo, seed_demo_xero
from gateway.sandbox.xero_emulator import AU_TENANT, DEMO_CLIENT, XeroEmulator
from gateway.sandbox.xero_emulator.limits import Limits as EmulatorLimits
from gateway.store.xero import NewConnection, XeroGrant
from gateway.xero.authorize import authorize_url
from gateway.xero.governor import GovernorSettings
from gateway.xero.identity import IdentityClient
from gateway.xero.limits import TIER_DAILY_LIMITS, Limits
from gateway.xero.pkce import new_verifier, s256_challenge

HOST = "127.0.0.1"
BENCH_USER = "max@harbour.example"  # a member of the AU organisation
TENANT = AU_TENANT.tenant_id
LIFTED = 10**9
# Xero's limits lifted on the gateway's side: for measuring what the listener itself costs.
# The daily budget goes by tier, so this process (a benchmark's only) knows one more tier.
TIER_DAILY_LIMITS["bench"] = LIFTED
NO_LIMITS = GovernorSettings(
    limits=Limits(in_flight=LIFTED, per_minute=LIFTED, app_per_minute=LIFTED),
    default_tier="bench",
    tenant_tiers={},
    queue_size=LIFTED,
)


def lift_emulator_limits(emulator: XeroEmulator) -> None:
    """No per-tenant or app limits at the emulator (it answers as fast as it can)."""
    emulator.state.limits = EmulatorLimits(
        concurrent_limit=LIFTED, minute_limit=LIFTED, app_minute_limit=LIFTED
    )
    for tenant_id, tenant in list(emulator.state.tenants.items()):
        emulator.state.tenants[tenant_id] = dataclasses.replace(tenant, day_limit=LIFTED)


def xero_settings(emulator_url: str) -> dict[str, Any]:
    """``[xero]`` pointing at the emulator at ``emulator_url``, as its demo app."""
    return {
        "client_id": DEMO_CLIENT.client_id,
        "client_secret": DEMO_CLIENT.client_secret or "",
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "authorize_url": emulator_url + "/identity/connect/authorize",
        "token_url": emulator_url + "/connect/token",
        "revoke_url": emulator_url + "/connect/revocation",
        "api_url": emulator_url,
    }


def bench_config(workdir: Path, *, emulator_url: str, app_url: str, **xero_proxy: Any) -> Config:
    settings = demo_settings(host=HOST, port=0, upstream_url=app_url, workdir=workdir)
    settings["xero"] = xero_settings(emulator_url)
    settings["xero_proxy"] = {"host": HOST, "port": 0, **xero_proxy}
    return build_config(settings, env={})


@dataclass(frozen=True, kw_only=True)
class XeroWorld:
    gateway: Gateway
    grant: XeroGrant
    gateway_token: str  # the verified session's: what the app presents to the listener
    access_token: str  # Xero's, as a bare proxy's caller would have to hold it

    @property
    def listener_url(self) -> str:
        listener = self.gateway.xero
        assert listener is not None
        return listener.url


async def open_world(
    config: Config,
    *,
    clock: Clock = system_clock,
    governor: GovernorSettings | None = None,
) -> XeroWorld:
    """Seed the demo, start the gateway (front and Xero listener), connect the AU tenant
    through a consent at the emulator, and sign the bench user in, verified."""
    gateway = await Gateway.open(config, clock=clock, passwords=Passwords(), xero_governor=governor)
    try:
        services = gateway.services
        await seed_demo(services.store, services.passwords, clock())
        await seed_demo_xero(services.store, clock())
        await services.decider.book.refresh()
        await gateway.start()
        user = await services.store.users.find_by_email(BENCH_USER)
        assert user is not None
        tokens = await _consent(config.xero, clock())
        assert gateway.xero is not None
        vault = gateway.xero.custody.vault
        async with (
            aiohttp.ClientSession() as http,
            http.get(
                config.xero.api_url + "/connections",
                headers={"Authorization": f"Bearer {tokens.access_token}"},
            ) as answer,
        ):
            listed = await answer.json()
        grant = await vault.connect(
            org_id=user.org_id,
            connected_by=user.id,
            tokens=tokens,
            connections=[
                NewConnection(
                    id=c["id"],
                    tenant_id=c["tenantId"],
                    tenant_type=c["tenantType"],
                    tenant_name=c["tenantName"],
                )
                for c in listed
                if c["tenantId"] == TENANT
            ],
            now=clock(),
        )
        _, live = await services.sessions.create(user, client_addr=HOST)
        _, live = await services.sessions.mark_verified(live, "totp", clock())
    except BaseException:
        await gateway.stop()
        raise
    return XeroWorld(
        gateway=gateway,
        grant=grant,
        gateway_token=live.gateway_token,
        access_token=tokens.access_token,
    )


async def _consent(config: XeroConfig, now: float) -> Any:
    """A consent at the emulator as a browser walks it (it consents at once), exchanged."""
    verifier = new_verifier()
    url = authorize_url(config, state="bench", code_challenge=s256_challenge(verifier))
    async with aiohttp.ClientSession() as http:
        async with http.get(url, allow_redirects=False) as answer:
            code = URL(answer.headers["Location"]).query["code"]
        identity = IdentityClient(config, http)
        return await identity.exchange_code(code=code, code_verifier=verifier, now=now)
