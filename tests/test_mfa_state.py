"""A user's enrolment as every process sees it: learnt at once where it happened and on the
next poll elsewhere, and a warm verified request still runs no SQL."""

from __future__ import annotations

from gateway.runtime.background import follow_other_processes
from tests.conftest import GatewayFactory, sign_in
from tests.test_admin_support import API, bearer, mint
from tests.test_mfa_pages import _enrol
from tests.test_shared_state import JSON, get, session_cookie

AU_USER = "max@harbour.example"


async def test_an_enrolment_reaches_this_process_at_once_and_others_on_their_next_poll(
    make_gateway: GatewayFactory,
) -> None:
    a, b = await make_gateway(policies=True), await make_gateway(policies=True)
    async with a.client() as elsewhere, a.client() as enrolling:
        await sign_in(elsewhere, email=AU_USER)
        other_session = session_cookie(elsewhere, a)
        # Before: in grace in both processes (each has decided and cached it).
        assert (await get(a, "/api/whoami", other_session, JSON)).status == 200
        assert (await get(b, "/api/whoami", other_session, JSON)).status == 200
        await sign_in(enrolling, email=AU_USER)
        await _enrol(enrolling, a)
    # In this process at once: the other session must now pass the second factor.
    held = await get(a, "/api/whoami", other_session, JSON)
    assert held.status == 403
    assert (await held.json())["verify_url"] == "/_gateway/mfa/verify"
    # Another process goes by what it cached until it polls the feed; one poll is enough.
    assert (await get(b, "/api/whoami", other_session, JSON)).status == 200
    await follow_other_processes(b.services)
    assert (await get(b, "/api/whoami", other_session, JSON)).status == 403


async def test_a_warm_verified_request_runs_no_sql(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(policies=True)
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        await _enrol(client, gateway)
        assert (await client.get("/api/whoami")).status == 200
        db = gateway.services.store.db
        before = db.statement_count
        for _ in range(3):
            body = await (await client.get("/api/whoami")).json()
            assert body["headers"]["X-Gateway-Mfa"] == "verified"
        assert db.statement_count == before


async def test_admin_reports_count_a_stored_enrolment(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(policies=True)
    token = await mint(gateway, "reports:read")
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        await _enrol(client, gateway)
    async with gateway.client() as http:
        explained = await http.get(
            f"{API}/decisions/explain", params={"user": AU_USER}, headers=bearer(token)
        )
        body = await explained.json()
        # A fresh session of an enrolled user must pass the second factor.
        assert body["outcome"] == "verify"
        report = await http.get(
            f"{API}/reports/readiness", params={"at": "2026-12-01"}, headers=bearer(token)
        )
        [policy] = (await report.json())["policies"]
    assert policy["enrolled"] == 1
