"""The Xero emulator behaves as Xero documents: codes and PKCE, rotating refresh tokens and
their grace retry, idle expiry, revocation, connections, tenant checks, limits and switches.
Everything runs against the real emulator on loopback, on the test's clock."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from gateway.clock import ManualClock
from gateway.sandbox.xero_emulator import (
    AU_TENANT,
    DEMO_CLIENT,
    DEMO_USER,
    NZ_TENANT,
    XeroEmulator,
)
from tests.conftest import START, consent_code

VERIFIER = "v" * 43 + "-verifier._~"
SECRET = DEMO_CLIENT.client_secret or ""
BASIC = {"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT.client_id, SECRET)}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def claims(jwt: str) -> dict[str, Any]:
    payload = jwt.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def token_call(
    http: aiohttp.ClientSession, xero: XeroEmulator, form: dict[str, str], **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    kwargs.setdefault("headers", BASIC)
    async with http.post(xero.token_url, data=form, **kwargs) as answer:
        return answer.status, await answer.json()


async def exchange(http: aiohttp.ClientSession, xero: XeroEmulator) -> dict[str, Any]:
    code = await consent_code(http, xero, verifier=VERIFIER)
    status, body = await token_call(
        http,
        xero,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": DEMO_CLIENT.redirect_uris[0],
            "code_verifier": VERIFIER,
        },
    )
    assert status == 200, body
    return body


async def refresh(
    http: aiohttp.ClientSession, xero: XeroEmulator, token: str
) -> tuple[int, dict[str, Any]]:
    return await token_call(http, xero, {"grant_type": "refresh_token", "refresh_token": token})


async def api_get(
    http: aiohttp.ClientSession,
    xero: XeroEmulator,
    path: str,
    access: str,
    tenant: str | None = AU_TENANT.tenant_id,
) -> aiohttp.ClientResponse:
    headers = {"Authorization": f"Bearer {access}", "Accept": "application/json"}
    if tenant is not None:
        headers["xero-tenant-id"] = tenant
    answer = await http.get(xero.url + path, headers=headers)
    await answer.read()
    return answer


# --- authorize ---------------------------------------------------------------------------


def authorize_params(**changes: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": DEMO_CLIENT.client_id,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "scope": "openid offline_access accounting.settings.read",
        "state": "s1",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
    }
    params.update(changes)
    return {k: v for k, v in params.items() if v != "-"}


async def test_authorize_sends_the_browser_back_with_a_code_and_the_state(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    answer = await http.get(xero.authorize_url, params=authorize_params(), allow_redirects=False)
    assert answer.status == 302
    location = answer.headers["Location"]
    assert location.startswith(DEMO_CLIENT.redirect_uris[0] + "?")
    assert "code=" in location
    assert "state=s1" in location


@pytest.mark.parametrize(
    "changes", [{"client_id": "NOPE"}, {"redirect_uri": "http://127.0.0.1:1/elsewhere"}]
)
async def test_authorize_never_redirects_for_an_unknown_app_or_uri(
    http: aiohttp.ClientSession, xero: XeroEmulator, changes: dict[str, str]
) -> None:
    answer = await http.get(
        xero.authorize_url, params=authorize_params(**changes), allow_redirects=False
    )
    assert answer.status == 400
    assert "Location" not in answer.headers


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "accounting.settings.read nonsense"}, "invalid_scope"),
        ({"scope": ""}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": "-"}, "invalid_request"),
        ({"code_challenge": "-", "code_challenge_method": "-"}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
    ],
)
async def test_authorize_answers_a_bad_request_with_an_error_at_the_redirect_uri(
    http: aiohttp.ClientSession, xero: XeroEmulator, changes: dict[str, str], error: str
) -> None:
    answer = await http.get(
        xero.authorize_url, params=authorize_params(**changes), allow_redirects=False
    )
    assert answer.status == 302
    location = answer.headers["Location"]
    assert f"error={error}" in location
    assert "code=" not in location
    assert "state=s1" in location


# --- token endpoint ----------------------------------------------------------------------


async def test_a_code_gives_xero_shaped_tokens(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    body = await exchange(http, xero)
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1800
    assert body["scope"].split() == [
        "openid",
        "profile",
        "email",
        "offline_access",
        "accounting.settings.read",
        "accounting.contacts",
        "accounting.transactions",
    ]
    access = claims(body["access_token"])
    assert access["exp"] == int(START) + 1800
    assert access["xero_userid"] == DEMO_USER.user_id
    assert access["client_id"] == DEMO_CLIENT.client_id
    assert access["scope"] == body["scope"].split()
    assert len(access["authentication_event_id"]) == 36
    assert claims(body["id_token"])["email"] == DEMO_USER.email
    assert body["refresh_token"] != body["access_token"]
    assert xero.counters.token_calls["authorization_code"] == 1


async def test_client_credentials_may_come_in_the_form(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    code = await consent_code(http, xero, verifier=VERIFIER)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "code_verifier": VERIFIER,
        "client_id": DEMO_CLIENT.client_id,
        "client_secret": SECRET,
    }
    status, _ = await token_call(http, xero, form, headers={})
    assert status == 200


@pytest.mark.parametrize(
    "auth",
    [
        {"Authorization": aiohttp.encode_basic_auth(DEMO_CLIENT.client_id, "wrong")},
        {"Authorization": aiohttp.encode_basic_auth("UNKNOWN", SECRET)},
        {"Authorization": "Basic !!!"},
        {},
    ],
)
async def test_a_bad_client_is_invalid_client(
    http: aiohttp.ClientSession, xero: XeroEmulator, auth: dict[str, str]
) -> None:
    body = await exchange(http, xero)
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, error = await token_call(http, xero, form, headers=auth)
    assert (status, error) == (400, {"error": "invalid_client"})
    assert (await refresh(http, xero, body["refresh_token"]))[0] == 200  # nothing was spent


async def test_a_wrong_pkce_verifier_is_invalid_grant(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    code = await consent_code(http, xero, verifier=VERIFIER)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "code_verifier": "w" * 43,
    }
    assert await token_call(http, xero, form) == (400, {"error": "invalid_grant"})
    # The code was spent by the failed attempt, as an attacker's guess must not leave it live.
    form["code_verifier"] = VERIFIER
    assert await token_call(http, xero, form) == (400, {"error": "invalid_grant"})


async def test_a_code_is_single_use_and_short_lived(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    code = await consent_code(http, xero, verifier=VERIFIER)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "code_verifier": VERIFIER,
    }
    assert (await token_call(http, xero, form))[0] == 200
    assert await token_call(http, xero, form) == (400, {"error": "invalid_grant"})
    late = await consent_code(http, xero, verifier=VERIFIER)
    clock.advance(301)
    assert await token_call(http, xero, {**form, "code": late}) == (400, {"error": "invalid_grant"})


async def test_an_unknown_grant_type_is_refused(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    status, body = await token_call(http, xero, {"grant_type": "password"})
    assert (status, body) == (400, {"error": "unsupported_grant_type"})


async def test_refresh_tokens_rotate_and_a_spent_one_is_invalid_grant(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    first = await exchange(http, xero)
    status, second = await refresh(http, xero, first["refresh_token"])
    assert status == 200
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        claims(second["access_token"])["authentication_event_id"]
        == claims(first["access_token"])["authentication_event_id"]
    )
    status, third = await refresh(http, xero, second["refresh_token"])
    assert status == 200
    # Its successor has been used: the first token is dead, grace or not.
    assert await refresh(http, xero, first["refresh_token"]) == (400, {"error": "invalid_grant"})
    status, fourth = await refresh(http, xero, third["refresh_token"])
    assert status == 200
    assert await refresh(http, xero, second["refresh_token"]) == (400, {"error": "invalid_grant"})
    assert (await refresh(http, xero, fourth["refresh_token"]))[0] == 200
    assert xero.counters.token_calls["refresh_token"] == 6


async def test_a_lost_response_may_be_retried_within_30_minutes_voiding_its_successor(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    first = await exchange(http, xero)
    _, lost = await refresh(http, xero, first["refresh_token"])
    clock.advance(29 * 60)
    status, retried = await refresh(http, xero, first["refresh_token"])
    assert status == 200
    assert retried["refresh_token"] not in (lost["refresh_token"], first["refresh_token"])
    assert await refresh(http, xero, lost["refresh_token"]) == (400, {"error": "invalid_grant"})
    assert (await refresh(http, xero, retried["refresh_token"]))[0] == 200


async def test_the_grace_retry_ends_after_30_minutes(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    first = await exchange(http, xero)
    _, second = await refresh(http, xero, first["refresh_token"])
    clock.advance(30 * 60 + 1)
    assert await refresh(http, xero, first["refresh_token"]) == (400, {"error": "invalid_grant"})
    assert (await refresh(http, xero, second["refresh_token"]))[0] == 200  # not voided


async def test_a_refresh_token_dies_after_60_days_unused(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    first = await exchange(http, xero)
    clock.advance(59 * 86400)
    status, second = await refresh(http, xero, first["refresh_token"])
    assert status == 200
    clock.advance(60 * 86400 + 1)
    assert await refresh(http, xero, second["refresh_token"]) == (400, {"error": "invalid_grant"})


async def test_an_access_token_lasts_30_minutes(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    access = (await exchange(http, xero))["access_token"]
    clock.advance(1799)
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 200
    clock.advance(1)
    expired = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
    assert expired.status == 401
    body = await expired.json()
    assert (body["Title"], body["Status"], body["Detail"]) == (
        "Unauthorized",
        401,
        "AuthenticationUnsuccessful",
    )
    forged = access[:-4] + ("AAAA" if not access.endswith("AAAA") else "BBBB")
    clock.set(START)
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", forged)).status == 401
    assert (await api_get(http, xero, "/connections", "not-a-jwt", tenant=None)).status == 401


async def test_revocation_removes_the_consent_and_its_connections(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    tokens = await exchange(http, xero)
    async with http.post(
        xero.revoke_url, data={"token": tokens["refresh_token"]}, headers=BASIC
    ) as a:
        assert a.status == 200
    assert await refresh(http, xero, tokens["refresh_token"]) == (400, {"error": "invalid_grant"})
    listed = await api_get(http, xero, "/connections", tokens["access_token"], tenant=None)
    assert await listed.json() == []
    organisation = await api_get(http, xero, "/api.xro/2.0/Organisation", tokens["access_token"])
    assert organisation.status == 403
    assert xero.counters.revocations == 1


# --- connections and tenants ---------------------------------------------------------------


async def test_connections_list_each_consent_and_filter_by_auth_event(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    xero.state.consent_tenants = (AU_TENANT.tenant_id,)
    au = await exchange(http, xero)
    xero.state.consent_tenants = (NZ_TENANT.tenant_id,)
    nz = await exchange(http, xero)
    listed = await (await api_get(http, xero, "/connections", nz["access_token"], None)).json()
    assert [c["tenantId"] for c in listed] == [AU_TENANT.tenant_id, NZ_TENANT.tenant_id]
    assert set(listed[0]) == {
        "id",
        "authEventId",
        "tenantId",
        "tenantType",
        "tenantName",
        "createdDateUtc",
        "updatedDateUtc",
    }
    assert listed[1]["tenantName"] == NZ_TENANT.name
    assert listed[1]["tenantType"] == "ORGANISATION"
    event = claims(au["access_token"])["authentication_event_id"]
    one = await api_get(http, xero, f"/connections?authEventId={event}", nz["access_token"], None)
    assert [c["tenantId"] for c in await one.json()] == [AU_TENANT.tenant_id]
    assert "X-MinLimit-Remaining" not in one.headers
    # A consent's token reaches the tenants it connected, not another consent's.
    assert (
        await api_get(http, xero, "/api.xro/2.0/Organisation", au["access_token"])
    ).status == 200
    refused = await api_get(http, xero, "/api.xro/2.0/Organisation", nz["access_token"])
    assert refused.status == 403
    assert (await refused.json())["Detail"] == "AuthorizationUnsuccessful"


async def test_a_connection_is_deleted_once(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    access = (await exchange(http, xero))["access_token"]
    listed = await (await api_get(http, xero, "/connections", access, None)).json()
    headers = {"Authorization": f"Bearer {access}"}
    url = f"{xero.url}/connections/{listed[0]['id']}"
    async with http.delete(url, headers=headers) as first:
        assert first.status == 204
    async with http.delete(url, headers=headers) as second:
        assert second.status == 404
    remaining = await (await api_get(http, xero, "/connections", access, None)).json()
    assert [c["tenantId"] for c in remaining] == [NZ_TENANT.tenant_id]
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 403


@pytest.mark.parametrize(
    "path",
    ["/Connections", "/CONNECTIONS/", "/API.XRO/2.0/organisation", "/api.xro/2.0/ORGANISATION"],
)
async def test_paths_match_without_regard_to_case(
    http: aiohttp.ClientSession, xero: XeroEmulator, path: str
) -> None:
    access = (await exchange(http, xero))["access_token"]
    assert (await api_get(http, xero, path, access)).status == 200


async def test_organisation_answers_in_xeros_shape(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    access = (await exchange(http, xero))["access_token"]
    body = await (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).json()
    assert body["Status"] == "OK"
    assert body["DateTimeUTC"] == f"/Date({int(START * 1000)}+0000)/"
    (org,) = body["Organisations"]
    assert org["OrganisationID"] == AU_TENANT.tenant_id
    assert (org["CountryCode"], org["Version"], org["BaseCurrency"]) == ("AU", "AU", "AUD")
    assert (org["Name"], org["ShortCode"]) == (AU_TENANT.name, AU_TENANT.short_code)
    assert org["Timezone"] == "AUSEASTERNSTANDARDTIME"
    assert {"LegalName", "OrganisationType", "OrganisationStatus", "IsDemoCompany"} <= set(org)
    nz = await api_get(http, xero, "/api.xro/2.0/Organisation", access, NZ_TENANT.tenant_id)
    assert (await nz.json())["Organisations"][0]["CountryCode"] == "NZ"


@pytest.mark.parametrize("tenant", [None, "", "00000000-0000-4000-8000-000000000000", "junk"])
async def test_an_unconnected_tenant_is_403(
    http: aiohttp.ClientSession, xero: XeroEmulator, tenant: str | None
) -> None:
    access = (await exchange(http, xero))["access_token"]
    answer = await api_get(http, xero, "/api.xro/2.0/Invoices", access, tenant)
    assert answer.status == 403
    assert (await answer.json())["Title"] == "Forbidden"


async def test_contacts_and_invoices_read_and_create(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    access = (await exchange(http, xero))["access_token"]
    contacts = (await (await api_get(http, xero, "/api.xro/2.0/Contacts", access)).json())[
        "Contacts"
    ]
    assert [c["Name"] for c in contacts] == [c.name for c in AU_TENANT.contacts]
    one = await api_get(http, xero, f"/api.xro/2.0/Contacts/{contacts[0]['ContactID']}", access)
    assert (await one.json())["Contacts"][0]["EmailAddress"] == AU_TENANT.contacts[0].email
    listed = (await (await api_get(http, xero, "/api.xro/2.0/Invoices", access)).json())["Invoices"]
    assert len(listed) == 2
    assert "LineItems" not in listed[0]
    assert listed[0]["CurrencyCode"] == "AUD"
    headers = {"Authorization": f"Bearer {access}", "xero-tenant-id": AU_TENANT.tenant_id}
    posted = {
        "Invoices": [
            {
                "Type": "ACCREC",
                "Contact": {"ContactID": contacts[1]["ContactID"]},
                "LineItems": [{"Description": "Audit", "Quantity": 2, "UnitAmount": 100}],
            }
        ]
    }
    async with http.put(f"{xero.url}/api.xro/2.0/Invoices", json=posted, headers=headers) as made:
        assert made.status == 200
        (invoice,) = (await made.json())["Invoices"]
    assert (invoice["SubTotal"], invoice["TotalTax"], invoice["Total"]) == (200.0, 20.0, 220.0)
    assert invoice["Contact"]["Name"] == contacts[1]["Name"]
    read = await api_get(http, xero, f"/api.xro/2.0/Invoices/{invoice['InvoiceID']}", access)
    assert (await read.json())["Invoices"][0]["LineItems"][0]["Description"] == "Audit"
    bad = {"Invoices": [{"Type": "ACCREC", "Contact": {"ContactID": "nope"}}]}
    async with http.post(f"{xero.url}/api.xro/2.0/Invoices", json=bad, headers=headers) as refused:
        assert refused.status == 400
        assert (await refused.json())["Type"] == "ValidationException"
    missing = await api_get(http, xero, f"/api.xro/2.0/Invoices/{AU_TENANT.tenant_id}", access)
    assert missing.status == 404
    # The NZ tenant has invoices of its own.
    nz = await api_get(http, xero, "/api.xro/2.0/Invoices", access, NZ_TENANT.tenant_id)
    assert [i["CurrencyCode"] for i in (await nz.json())["Invoices"]] == ["NZD"]


# --- limits --------------------------------------------------------------------------------


async def test_each_answer_carries_the_remaining_budgets_and_the_61st_call_is_429(
    http: aiohttp.ClientSession, xero: XeroEmulator, clock: ManualClock
) -> None:
    access = (await exchange(http, xero))["access_token"]
    for n in range(1, 61):
        answer = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
        assert answer.status == 200
        assert answer.headers["X-MinLimit-Remaining"] == str(60 - n)
        assert answer.headers["X-DayLimit-Remaining"] == str(AU_TENANT.day_limit - n)
        assert answer.headers["X-AppMinLimit-Remaining"] == str(10_000 - n)
    over = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
    assert over.status == 429
    assert over.headers["X-Rate-Limit-Problem"] == "minute"
    wait = int(over.headers["Retry-After"])
    assert 1 <= wait <= 60
    # Another tenant has a budget of its own; the app-wide count goes on.
    nz = await api_get(http, xero, "/api.xro/2.0/Organisation", access, NZ_TENANT.tenant_id)
    assert nz.status == 200
    assert nz.headers["X-AppMinLimit-Remaining"] == str(10_000 - 61)
    clock.advance(wait)
    again = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
    assert again.status == 200
    assert again.headers["X-MinLimit-Remaining"] == "59"
    assert xero.counters.rejected[(AU_TENANT.tenant_id, "minute")] == 1
    assert xero.counters.rejections == 1
    # Xero's windows are fixed, so a rolling minute across the reset can hold 61 calls;
    # the counter measures rolling minutes, the stricter view a governor keeps.
    assert xero.counters.max_per_minute[AU_TENANT.tenant_id] == 61


@pytest.fixture
async def small_budgets(clock: ManualClock) -> AsyncIterator[XeroEmulator]:
    tenants = (replace(AU_TENANT, day_limit=3), NZ_TENANT)
    async with XeroEmulator(clock=clock, tenants=tenants) as emulator:
        yield emulator


async def test_the_daily_budget_is_per_tenant(
    http: aiohttp.ClientSession, small_budgets: XeroEmulator, clock: ManualClock
) -> None:
    xero = small_budgets
    access = (await exchange(http, xero))["access_token"]
    for _ in range(3):
        assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 200
    over = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
    assert (over.status, over.headers["X-Rate-Limit-Problem"]) == (429, "day")
    assert over.headers["X-DayLimit-Remaining"] == "0"
    wait = int(over.headers["Retry-After"])
    assert 60 < wait <= 86400
    clock.advance(wait)
    access = (await exchange(http, xero))["access_token"]
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 200


async def test_the_app_wide_minute_limit_spans_tenants(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    xero.state.limits.app_minute_limit = 2
    access = (await exchange(http, xero))["access_token"]
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 200
    nz = NZ_TENANT.tenant_id
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access, nz)).status == 200
    over = await api_get(http, xero, "/api.xro/2.0/Contacts", access, nz)
    assert (over.status, over.headers["X-Rate-Limit-Problem"]) == (429, "appminute")


async def test_a_sixth_call_in_flight_is_429_and_the_peak_is_counted(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    access = (await exchange(http, xero))["access_token"]
    xero.switches.hang_next(5)
    held = [
        asyncio.create_task(api_get(http, xero, "/api.xro/2.0/Organisation", access))
        for _ in range(5)
    ]
    await xero.counters.wait_in_flight(AU_TENANT.tenant_id, 5)
    sixth = await api_get(http, xero, "/api.xro/2.0/Organisation", access)
    assert (sixth.status, sixth.headers["X-Rate-Limit-Problem"]) == (429, "concurrent")
    assert "Retry-After" not in sixth.headers  # documented for the windowed limits only
    other = await api_get(http, xero, "/api.xro/2.0/Organisation", access, NZ_TENANT.tenant_id)
    assert other.status == 200
    xero.switches.release()
    assert [a.status for a in await asyncio.gather(*held)] == [200] * 5
    assert xero.counters.max_in_flight[AU_TENANT.tenant_id] == 5
    assert xero.counters.in_flight[AU_TENANT.tenant_id] == 0
    assert (await api_get(http, xero, "/api.xro/2.0/Organisation", access)).status == 200


# --- switches ------------------------------------------------------------------------------


async def test_failures_answer_5xx_for_the_next_n_calls_and_change_nothing(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    tokens = await exchange(http, xero)
    xero.switches.fail_next(2, on="token", status=502, retry_after=7)
    for _ in range(2):
        async with http.post(
            xero.token_url,
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            headers=BASIC,
        ) as failed:
            assert (failed.status, failed.headers["Retry-After"]) == (502, "7")
    assert (await refresh(http, xero, tokens["refresh_token"]))[0] == 200
    xero.switches.fail_next(1, on="api")
    assert (
        await api_get(http, xero, "/api.xro/2.0/Organisation", tokens["access_token"])
    ).status == 503
    assert (
        await api_get(http, xero, "/api.xro/2.0/Organisation", tokens["access_token"])
    ).status == 200


async def test_a_dropped_token_response_still_spends_the_refresh_token(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    tokens = await exchange(http, xero)
    xero.switches.drop_next_token_responses()
    with pytest.raises(aiohttp.ClientError):
        await refresh(http, xero, tokens["refresh_token"])
    assert xero.counters.token_calls["refresh_token"] == 1
    # The refresh happened: the old token is now only good as a grace retry.
    status, retried = await refresh(http, xero, tokens["refresh_token"])
    assert status == 200
    assert (await refresh(http, xero, retried["refresh_token"]))[0] == 200
    assert await refresh(http, xero, tokens["refresh_token"]) == (400, {"error": "invalid_grant"})


async def test_a_hung_token_call_times_out_and_changes_nothing_until_released(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    tokens = await exchange(http, xero)
    xero.switches.hang_next(1, on="token")
    with pytest.raises(asyncio.TimeoutError):
        await refresh(
            http,
            xero,
            tokens["refresh_token"],
        ) if False else await token_call(
            http,
            xero,
            {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            timeout=aiohttp.ClientTimeout(total=0.2),
        )
    assert (await refresh(http, xero, tokens["refresh_token"]))[0] == 200


async def test_switches_and_counters_over_the_control_route(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    tokens = await exchange(http, xero)
    switches = {"fail": {"n": 1, "on": "api", "status": 500}, "drop_token_responses": 0}
    async with http.post(f"{xero.url}/_emulator/switches", json=switches) as set_:
        assert set_.status == 200
    assert (
        await api_get(http, xero, "/api.xro/2.0/Organisation", tokens["access_token"])
    ).status == 500
    async with http.post(
        f"{xero.url}/_emulator/switches", json={"fail": {"n": 1, "on": "x"}}
    ) as bad:
        assert bad.status == 400
    async with http.get(f"{xero.url}/_emulator/stats") as stats:
        body = await stats.json()
    assert body["token_endpoint_calls"] == 1
    assert body["api_calls"] == {AU_TENANT.tenant_id: 1}
    assert body["max_in_flight"] == {AU_TENANT.tenant_id: 1}


async def test_unknown_paths_and_methods(http: aiohttp.ClientSession, xero: XeroEmulator) -> None:
    async with http.get(f"{xero.url}/nowhere") as missing:
        assert missing.status == 404
    async with http.get(xero.token_url) as wrong_method:
        assert wrong_method.status == 405


async def test_added_latency_delays_each_answer(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    access = (await exchange(http, xero))["access_token"]
    xero.switches.latency = 30.0  # far past the client's patience below
    with pytest.raises(asyncio.TimeoutError):
        await http.get(
            xero.url + "/connections",
            headers={"Authorization": f"Bearer {access}"},
            timeout=aiohttp.ClientTimeout(total=0.1),
        )
    xero.switches.clear()
    assert (await api_get(http, xero, "/connections", access, None)).status == 200


async def test_bad_input_gets_a_clear_4xx(http: aiohttp.ClientSession, xero: XeroEmulator) -> None:
    code = await consent_code(http, xero, verifier=VERIFIER)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "code_verifier": "é" * 50,
    }
    assert await token_call(http, xero, form) == (400, {"error": "invalid_grant"})
    for body in ([1], {"fail": 3}, {"hang": {"n": "x"}}, {"fail": {"n": 1, "status": 404}}):
        async with http.post(f"{xero.url}/_emulator/switches", json=body) as refused:
            assert refused.status == 400
    headers = {"Authorization": "Bearer x", "Content-Type": "application/json"}
    async with http.put(f"{xero.url}/api.xro/2.0/Invoices", data=b"{", headers=headers) as a:
        assert a.status == 401


async def test_a_gateway_on_any_port_can_be_allowed_as_redirect_uri(
    http: aiohttp.ClientSession, xero: XeroEmulator
) -> None:
    callback = "http://127.0.0.1:43123/_gateway/xero/callback"
    client = xero.allow_redirect_uri(callback)
    assert client.redirect_uris[0] == callback
    assert xero.xero_settings(client)["redirect_uri"] == callback
    assert await consent_code(http, xero, verifier=VERIFIER, client=client)


def test_the_emulator_runs_on_its_own() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway.sandbox.xero_emulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        started = json.loads(child.stdout.readline())
        with urllib.request.urlopen(started["url"] + "/_emulator/stats") as answer:  # noqa: S310
            assert json.loads(answer.read())["token_endpoint_calls"] == 0
        assert started["xero"]["token_url"] == started["url"] + "/connect/token"
    finally:
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("scopes", "method", "path", "status"),
    [
        ("accounting.settings.read", "GET", "/api.xro/2.0/Organisation", 200),
        ("accounting.contacts", "GET", "/api.xro/2.0/Organisation", 401),
        ("accounting.settings.read", "GET", "/api.xro/2.0/Contacts", 401),
        ("accounting.contacts.read", "GET", "/api.xro/2.0/Contacts", 200),
        ("accounting.transactions.read", "GET", "/api.xro/2.0/Invoices", 200),
        ("accounting.invoices.read", "GET", "/api.xro/2.0/Invoices", 200),
        ("accounting.transactions.read", "PUT", "/api.xro/2.0/Invoices", 401),
        ("accounting.invoices", "PUT", "/api.xro/2.0/Invoices", 400),  # reached validation
    ],
)
async def test_each_resource_needs_its_scope(
    http: aiohttp.ClientSession,
    xero: XeroEmulator,
    scopes: str,
    method: str,
    path: str,
    status: int,
) -> None:
    code = await consent_code(http, xero, verifier=VERIFIER, scopes=f"offline_access {scopes}")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": DEMO_CLIENT.redirect_uris[0],
        "code_verifier": VERIFIER,
    }
    access = (await token_call(http, xero, form))[1]["access_token"]
    headers = {"Authorization": f"Bearer {access}", "xero-tenant-id": AU_TENANT.tenant_id}
    async with http.request(method, xero.url + path, headers=headers, json={}) as answer:
        assert answer.status == status
        if status == 401:
            assert (await answer.json())["Detail"] == "AuthorizationUnsuccessful"
