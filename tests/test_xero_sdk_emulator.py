"""Unmodified xero-python against the Xero emulator: IdentityApi and AccountingApi on a
Configuration whose hosts point at it, the SDK's own refresh, and its rate-limit error. This
keeps the emulator honest to the shapes the SDK (and so an app behind the gateway) expects."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import aiohttp
import pytest
from xero_python.accounting import AccountingApi, Contact, Invoice, Invoices, LineItem
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi
from xero_python.exceptions import RateLimitException
from xero_python.identity import IdentityApi

from gateway.clock import ManualClock
from gateway.sandbox.xero_emulator import AU_TENANT, DEMO_CLIENT, NZ_TENANT, XeroEmulator
from tests.conftest import consent_code

T = TypeVar("T")
VERIFIER = "sdk-verifier-" + "x" * 40


@pytest.fixture
def wall_clock_xero(xero: XeroEmulator, clock: ManualClock) -> XeroEmulator:
    # The SDK judges expiry by time.time(), so the emulator's clock starts at the wall's.
    clock.set(time.time())
    return xero


@pytest.fixture
async def tokens(wall_clock_xero: XeroEmulator) -> dict[str, Any]:
    xero = wall_clock_xero
    async with aiohttp.ClientSession() as http:
        code = await consent_code(
            http,
            xero,
            verifier=VERIFIER,
            scopes="openid offline_access accounting.settings.read accounting.contacts.read "
            "accounting.transactions",
        )
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEMO_CLIENT.redirect_uris[0],
            "code_verifier": VERIFIER,
        }
        basic = aiohttp.encode_basic_auth(DEMO_CLIENT.client_id, DEMO_CLIENT.client_secret or "")
        async with http.post(xero.token_url, data=form, headers={"Authorization": basic}) as a:
            body: dict[str, Any] = await a.json()
    body["scope"] = body["scope"].split()  # the SDK joins a string character by character
    body["expires_at"] = time.time() + body["expires_in"]
    return body


def sdk_client(tokens: dict[str, Any]) -> ApiClient:
    """An SDK client as an app builds one, keeping the token in a dict it updates."""
    token = OAuth2Token(
        client_id=DEMO_CLIENT.client_id, client_secret=DEMO_CLIENT.client_secret or ""
    )
    configuration = Configuration()
    configuration.oauth2_token = token  # Configuration(oauth2_token=…) keeps the first one made
    client = ApiClient(configuration, pool_threads=1)
    store = dict(tokens)

    @client.oauth2_token_getter  # type: ignore[untyped-decorator]
    def get() -> dict[str, Any]:
        return store

    @client.oauth2_token_saver  # type: ignore[untyped-decorator]
    def save(new: dict[str, Any]) -> None:
        store.clear()
        store.update(new)

    client.saved = store  # the test reads what the SDK saved
    return client


async def off_loop(work: Callable[[], T]) -> T:
    return await asyncio.to_thread(work)


async def test_identity_api_lists_and_deletes_connections(
    wall_clock_xero: XeroEmulator, tokens: dict[str, Any]
) -> None:
    api = IdentityApi(sdk_client(tokens), base_url=wall_clock_xero.api_url)
    connections = await off_loop(api.get_connections)
    assert sorted(c.tenant_id for c in connections) == sorted(
        [AU_TENANT.tenant_id, NZ_TENANT.tenant_id]
    )
    assert {c.tenant_type for c in connections} == {"ORGANISATION"}
    await off_loop(lambda: api.delete_connection(connections[0].id))
    assert len(await off_loop(api.get_connections)) == 1


async def test_accounting_api_reads_organisation_contacts_and_invoices_and_creates_one(
    wall_clock_xero: XeroEmulator, tokens: dict[str, Any]
) -> None:
    api = AccountingApi(sdk_client(tokens), base_url=wall_clock_xero.api_url + "/api.xro/2.0")
    tenant = AU_TENANT.tenant_id
    org = (await off_loop(lambda: api.get_organisations(tenant))).organisations[0]
    assert (org.country_code.value, org.short_code, org.timezone.value) == (
        "AU",
        AU_TENANT.short_code,
        "AUSEASTERNSTANDARDTIME",
    )
    contacts = (await off_loop(lambda: api.get_contacts(tenant))).contacts
    assert [c.name for c in contacts] == [c.name for c in AU_TENANT.contacts]
    listed = (await off_loop(lambda: api.get_invoices(tenant))).invoices
    assert len(listed) == 2
    assert listed[0].currency_code.value == "AUD"
    assert listed[0].date is not None
    new = Invoices(
        invoices=[
            Invoice(
                type="ACCREC",
                contact=Contact(contact_id=contacts[0].contact_id),
                line_items=[LineItem(description="Tax return", quantity=1.0, unit_amount=350.0)],
            )
        ]
    )
    made = (await off_loop(lambda: api.create_invoices(tenant, new))).invoices[0]
    assert made.total == 385.0
    fetched = (await off_loop(lambda: api.get_invoice(tenant, made.invoice_id))).invoices[0]
    assert fetched.line_items[0].description == "Tax return"


async def test_the_sdks_own_refresh_works_against_the_emulator(
    wall_clock_xero: XeroEmulator, tokens: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The SDK keeps the token URL on the class: only a test may repoint it like this.
    monkeypatch.setattr(TokenApi, "refresh_token_url", wall_clock_xero.token_url)
    client = sdk_client({**tokens, "expires_at": time.time() + 30})  # due: within 60 s
    api = IdentityApi(client, base_url=wall_clock_xero.api_url)
    assert len(await off_loop(api.get_connections)) == 2
    assert wall_clock_xero.counters.token_calls["refresh_token"] == 1
    assert client.saved["refresh_token"] != tokens["refresh_token"]


async def test_the_sdk_reads_xeros_rate_limit_problem(
    wall_clock_xero: XeroEmulator, tokens: dict[str, Any]
) -> None:
    # The concurrent limit, as its 429 has no Retry-After: for the windowed limits urllib3
    # (under the SDK) sleeps out Retry-After and tries again, up to three times.
    wall_clock_xero.state.limits.concurrent_limit = 0
    api = AccountingApi(sdk_client(tokens), base_url=wall_clock_xero.api_url + "/api.xro/2.0")
    with pytest.raises(RateLimitException) as caught:
        await off_loop(lambda: api.get_organisations(NZ_TENANT.tenant_id))
    assert caught.value.rate_limit == "concurrent"
