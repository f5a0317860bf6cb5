"""The identity client against the real Xero emulator on loopback: the authorize URL, code
exchange, refresh, revoke and their failures, and the tenant reads through xero-python."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from xero_python.api_client import Configuration
from yarl import URL

from gateway.clock import ManualClock
from gateway.config import XeroConfig
from gateway.sandbox.xero_emulator import AU_TENANT, NZ_TENANT, EmulatedClient, XeroEmulator
from gateway.xero.authorize import authorize_url, requested_scopes
from gateway.xero.identity import IdentityClient
from gateway.xero.pkce import new_verifier, s256_challenge
from gateway.xero.tenants import TenantReader
from gateway.xero.tokens import (
    InvalidGrant,
    TokenEndpoint,
    TokenSet,
    XeroRejected,
    XeroUnavailable,
)
from tests.conftest import START


@pytest.fixture
def config(xero: XeroEmulator) -> XeroConfig:
    return XeroConfig(**xero.xero_settings())


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def identity(config: XeroConfig, http: aiohttp.ClientSession) -> IdentityClient:
    return IdentityClient(config, http, timeout=0.5)


async def connect(
    http: aiohttp.ClientSession, config: XeroConfig, identity: TokenEndpoint, now: float
) -> TokenSet:
    """The whole consent: the browser follows our authorize URL, we exchange the code."""
    verifier = new_verifier()
    url = authorize_url(config, state="state-1", code_challenge=s256_challenge(verifier))
    async with http.get(url, allow_redirects=False) as answer:
        assert answer.status == 302, await answer.text()
        back = URL(answer.headers["Location"])
    assert back.query["state"] == "state-1"
    return await identity.exchange_code(code=back.query["code"], code_verifier=verifier, now=now)


# --- the authorize URL ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "asked"),
    [
        (
            ("openid", "accounting.settings.read"),
            ("openid", "accounting.settings.read", "offline_access"),
        ),
        (("offline_access", "openid", "openid"), ("offline_access", "openid")),
        ((), ("offline_access",)),
    ],
)
def test_scopes_always_include_offline_access_once(
    scopes: tuple[str, ...], asked: tuple[str, ...]
) -> None:
    assert requested_scopes(XeroConfig(scopes=scopes)) == asked


def test_the_authorize_url_carries_everything_xero_needs(config: XeroConfig) -> None:
    verifier = new_verifier()
    url = URL(authorize_url(config, state="s&t=1", code_challenge=s256_challenge(verifier)))
    assert str(url.with_query(None)) == config.authorize_url
    assert dict(url.query) == {
        "response_type": "code",
        "client_id": config.client_id,
        "redirect_uri": config.redirect_uri,
        "scope": " ".join(requested_scopes(config)),
        "state": "s&t=1",
        "code_challenge": s256_challenge(verifier),
        "code_challenge_method": "S256",
    }


# --- the token endpoint ---------------------------------------------------------------------


async def test_a_consent_gives_a_token_set_naming_its_auth_event(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    endpoint: TokenEndpoint = identity  # mypy checks the client keeps the vault's protocol
    tokens = await connect(http, config, endpoint, START)
    assert tokens.expires_at == START + 1800
    assert "offline_access" in tokens.scopes
    assert tokens.id_token is not None
    assert tokens.auth_event_id is not None
    assert [c.auth_event_id for c in xero.state.grants.connections.values()] == [
        tokens.auth_event_id
    ] * 2
    assert tokens.refresh_token not in repr(tokens)


async def test_a_wrong_verifier_is_invalid_grant(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient
) -> None:
    url = authorize_url(config, state="s", code_challenge=s256_challenge(new_verifier()))
    async with http.get(url, allow_redirects=False) as answer:
        code = URL(answer.headers["Location"]).query["code"]
    with pytest.raises(InvalidGrant):
        await identity.exchange_code(code=code, code_verifier=new_verifier(), now=START)


async def test_refresh_rotates_and_a_spent_token_is_invalid_grant(
    http: aiohttp.ClientSession,
    config: XeroConfig,
    identity: IdentityClient,
    clock: ManualClock,
) -> None:
    first = await connect(http, config, identity, START)
    clock.advance(1790)
    second = await identity.refresh(first.refresh_token, now=clock())
    assert second.refresh_token != first.refresh_token
    assert second.expires_at == clock() + 1800
    assert second.auth_event_id == first.auth_event_id
    await identity.refresh(second.refresh_token, now=clock())
    with pytest.raises(InvalidGrant) as caught:
        await identity.refresh(first.refresh_token, now=clock())
    assert first.refresh_token not in str(caught.value)


async def test_revoke_ends_the_consent(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    tokens = await connect(http, config, identity, START)
    await identity.revoke(tokens.refresh_token)
    assert xero.state.grants.connections == {}
    with pytest.raises(InvalidGrant):
        await identity.refresh(tokens.refresh_token, now=START)


async def test_5xx_is_unavailable_with_retry_after_and_spends_nothing(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    tokens = await connect(http, config, identity, START)
    xero.switches.fail_next(1, on="token", status=503, retry_after=12)
    with pytest.raises(XeroUnavailable) as caught:
        await identity.refresh(tokens.refresh_token, now=START)
    assert caught.value.retry_after == 12
    assert tokens.refresh_token not in str(caught.value)
    await identity.refresh(tokens.refresh_token, now=START)


async def test_a_timeout_is_unavailable(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    tokens = await connect(http, config, identity, START)
    xero.switches.hang_next(1, on="token")
    with pytest.raises(XeroUnavailable, match="timed out"):
        await identity.refresh(tokens.refresh_token, now=START)
    xero.switches.release()


async def test_a_lost_response_is_unavailable_though_xero_did_the_refresh(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    tokens = await connect(http, config, identity, START)
    xero.switches.drop_next_token_responses()
    with pytest.raises(XeroUnavailable, match="could not be reached"):
        await identity.refresh(tokens.refresh_token, now=START)
    assert xero.counters.token_calls["refresh_token"] == 1


async def test_nothing_listening_is_unavailable(http: aiohttp.ClientSession) -> None:
    config = XeroConfig(
        client_id="X", client_secret="Y", token_url="http://127.0.0.1:9/connect/token"
    )
    with pytest.raises(XeroUnavailable):
        await IdentityClient(config, http).refresh("r", now=START)


async def test_a_wrong_secret_is_rejected_not_invalid_grant(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient
) -> None:
    tokens = await connect(http, config, identity, START)
    wrong = IdentityClient(XeroConfig(**{**config.__dict__, "client_secret": "nope"}), http)
    with pytest.raises(XeroRejected) as caught:
        await wrong.refresh(tokens.refresh_token, now=START)
    assert caught.value.status == 400
    assert "invalid_client" in str(caught.value)


async def test_a_pkce_only_app_names_itself_in_the_form(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    public = EmulatedClient(
        client_id="PUBLIC", client_secret=None, redirect_uris=("http://127.0.0.1:1/cb",)
    )
    xero.state.add_client(public)
    config = XeroConfig(**xero.xero_settings(public))
    identity = IdentityClient(config, http)
    tokens = await connect(http, config, identity, START)
    await identity.refresh(tokens.refresh_token, now=START)


# --- tenant reads (xero-python) -------------------------------------------------------------


async def test_connections_of_one_consent(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    xero.state.consent_tenants = (AU_TENANT.tenant_id,)
    first = await connect(http, config, identity, START)
    xero.state.consent_tenants = (NZ_TENANT.tenant_id,)
    second = await connect(http, config, identity, START)
    reader = TenantReader(config)
    every = await reader.connections(second.access_token)
    assert [c.tenant_id for c in every] == [AU_TENANT.tenant_id, NZ_TENANT.tenant_id]
    mine = await reader.connections(second.access_token, auth_event_id=second.auth_event_id)
    assert [(c.tenant_id, c.tenant_name, c.tenant_type) for c in mine] == [
        (NZ_TENANT.tenant_id, NZ_TENANT.name, "ORGANISATION")
    ]
    assert mine[0].auth_event_id == second.auth_event_id
    assert mine[0].created is not None
    assert first.auth_event_id != second.auth_event_id


async def test_organisation_facts(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient
) -> None:
    tokens = await connect(http, config, identity, START)
    reader = TenantReader(config)
    au = await reader.organisation(tokens.access_token, AU_TENANT.tenant_id)
    assert (au.country_code, au.name, au.short_code) == ("AU", AU_TENANT.name, AU_TENANT.short_code)
    assert (au.base_currency, au.organisation_type) == ("AUD", "COMPANY")
    nz = await reader.organisation(tokens.access_token, NZ_TENANT.tenant_id)
    assert (nz.tenant_id, nz.country_code, nz.legal_name) == (
        NZ_TENANT.tenant_id,
        "NZ",
        NZ_TENANT.legal_name,
    )


async def test_disconnect_once(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient
) -> None:
    tokens = await connect(http, config, identity, START)
    reader = TenantReader(config)
    connection = (await reader.connections(tokens.access_token))[0]
    assert await reader.disconnect(tokens.access_token, connection.id) is True
    assert await reader.disconnect(tokens.access_token, connection.id) is False
    assert len(await reader.connections(tokens.access_token)) == 1


async def test_tenant_read_failures(
    http: aiohttp.ClientSession,
    config: XeroConfig,
    identity: IdentityClient,
    xero: XeroEmulator,
    clock: ManualClock,
) -> None:
    tokens = await connect(http, config, identity, START)
    reader = TenantReader(config, timeout=(1.0, 0.3))
    # Answered at once: urllib3 does not sleep out a 503's Retry-After in the thread.
    xero.switches.fail_next(1, on="api", status=503, retry_after=86400)
    with pytest.raises(XeroUnavailable) as unavailable:
        await reader.organisation(tokens.access_token, AU_TENANT.tenant_id)
    assert unavailable.value.retry_after == 86400
    xero.state.limits.minute_limit = 0
    with pytest.raises(XeroUnavailable) as limited:
        await reader.organisation(tokens.access_token, AU_TENANT.tenant_id)
    assert limited.value.retry_after is not None
    assert xero.counters.rejected[(AU_TENANT.tenant_id, "minute")] == 1
    xero.state.limits.minute_limit = 60
    with pytest.raises(XeroRejected) as forbidden:
        await reader.organisation(tokens.access_token, "00000000-0000-4000-8000-000000000000")
    assert forbidden.value.status == 403
    clock.advance(1800)
    with pytest.raises(XeroRejected) as expired:
        await reader.connections(tokens.access_token)
    assert expired.value.status == 401
    assert tokens.access_token not in str(expired.value)


async def test_a_hung_tenant_read_is_unavailable(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient, xero: XeroEmulator
) -> None:
    tokens = await connect(http, config, identity, START)
    xero.switches.hang_next(1, on="api")
    with pytest.raises(XeroUnavailable):
        await TenantReader(config, timeout=(1.0, 0.2)).connections(tokens.access_token)
    xero.switches.release()


async def test_nothing_listening_for_tenant_reads_is_unavailable() -> None:
    reader = TenantReader(XeroConfig(api_url="http://127.0.0.1:9"), timeout=(0.5, 0.5))
    with pytest.raises(XeroUnavailable):
        await reader.connections("token")


async def test_no_token_reaches_the_log(
    http: aiohttp.ClientSession,
    config: XeroConfig,
    identity: IdentityClient,
    xero: XeroEmulator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens = await connect(http, config, identity, START)
    renewed = await identity.refresh(tokens.refresh_token, now=START)
    xero.switches.fail_next(1, on="token")
    with pytest.raises(XeroUnavailable):
        await identity.refresh(renewed.refresh_token, now=START)
    with pytest.raises(InvalidGrant):
        await identity.refresh(tokens.refresh_token + "x", now=START)
    await identity.revoke(renewed.refresh_token)
    logged = caplog.text
    assert "xero refresh: 200" in logged
    for secret in (tokens.refresh_token, tokens.access_token, renewed.refresh_token):
        assert secret not in logged


async def test_tenant_reads_leave_no_token_in_the_sdks_shared_configuration(
    http: aiohttp.ClientSession, config: XeroConfig, identity: IdentityClient
) -> None:
    tokens = await connect(http, config, identity, START)
    reader = TenantReader(config)
    await asyncio.gather(
        reader.connections(tokens.access_token),
        reader.organisation(tokens.access_token, AU_TENANT.tenant_id),
    )
    # Every Configuration() is a copy of the process's first one: none may now hold our token.
    shared = Configuration().oauth2_token
    assert shared is None or shared.access_token != tokens.access_token
