"""Two gateways on one store: a session's second-factor check and its dismissed prompt reach
the other process on its next poll of the change feeds, and survive a restart."""

from __future__ import annotations

import aiohttp
from yarl import URL

from gateway.enforcement.decisions import PROMPT_KEY
from gateway.runtime.background import follow_other_processes
from tests.conftest import GatewayFactory, RunningGateway, sign_in

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
AU_USER, NZ_USER = "max@harbour.example", "leo@kauri.example"
COOKIE = "gw-session"  # cookie_secure is off in the tests: no __Host- prefix


def session_cookie(client: aiohttp.ClientSession, gateway: RunningGateway) -> str:
    return client.cookie_jar.filter_cookies(gateway.url)[COOKIE].value


async def get(
    gateway: RunningGateway, path: str, raw_id: str, accept: dict[str, str]
) -> aiohttp.ClientResponse:
    """A request to ``gateway`` with the session cookie another gateway set."""
    async with gateway.client() as client:
        response = await client.get(
            path, headers={**accept, "Cookie": f"{COOKIE}={raw_id}"}, allow_redirects=False
        )
        await response.read()
        return response


async def mfa_header(gateway: RunningGateway, raw_id: str) -> str:
    response = await get(gateway, "/api/whoami", raw_id, JSON)
    assert response.status == 200
    body = await response.json()
    return str(body["headers"]["X-Gateway-Mfa"])


async def test_another_gateway_learns_a_dismissal_on_its_next_poll(
    make_gateway: GatewayFactory,
) -> None:
    a, b = await make_gateway(policies=True), await make_gateway(policies=True)
    async with a.client() as client:
        await sign_in(client, email=AU_USER)
        raw_id = session_cookie(client, a)
        prompted = await get(b, "/reports", raw_id, HTML)
        assert URL(prompted.headers["Location"]).path == "/_gateway/mfa/prompt"
        page = await client.get("/_gateway/mfa/prompt?next=/reports", headers=HTML)
        token = (await page.text()).split('name="csrf" value="')[1].split('"')[0]
        dismissed = await client.post(
            "/_gateway/mfa/dismiss", data={"csrf": token, "next": "/reports"}
        )
        assert dismissed.status in (200, 404)  # followed on to the app
    # Until b polls the feeds it goes by what it cached; one poll is enough.
    assert (await get(b, "/reports", raw_id, HTML)).status == 302
    await follow_other_processes(b.services)
    assert (await get(b, "/reports", raw_id, HTML)).status in (200, 404)
    assert await mfa_header(b, raw_id) == "grace"
    user = await b.services.store.users.find_by_email(AU_USER)
    assert user is not None
    assert await b.services.decider.dismissals(user.id) == 1
    assert await b.services.store.dismissals.count(user.id, PROMPT_KEY) == 1


async def test_another_gateway_learns_a_second_factor_check_on_its_next_poll(
    make_gateway: GatewayFactory,
) -> None:
    a, b = await make_gateway(policies=True), await make_gateway(policies=True)
    async with a.client() as client:
        await sign_in(client, email=NZ_USER)
        raw_id = session_cookie(client, a)
    assert await mfa_header(b, raw_id) == "not-required"  # b caches the session
    live = await a.services.sessions.lookup(raw_id)
    assert live is not None
    new_id, _ = await a.services.sessions.mark_verified(live, "totp", a.clock())
    await follow_other_processes(b.services)
    assert (await get(b, "/api/whoami", raw_id, JSON)).status == 401  # the old id is over
    assert await mfa_header(b, new_id) == "verified"
    # A gateway started afterwards (a restart) reads the check back from the store.
    c = await make_gateway(policies=True)
    assert await mfa_header(c, new_id) == "verified"
    restarted = await c.services.sessions.lookup(new_id)
    assert restarted is not None
    assert restarted.second_factor is not None
    assert (restarted.second_factor.method, restarted.second_factor.at) == ("totp", a.clock())
