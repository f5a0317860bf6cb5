"""The 2FA prompt and block in the request path, with the shipped AU policy in force."""

from __future__ import annotations

import re

import pytest
from yarl import URL

from gateway.enforcement.decisions import PROMPT_KEY
from tests.conftest import START, GatewayFactory, RunningGateway, cap_dismissals, sign_in

HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
DEADLINE = 1_798_722_000.0  # 2027-01-01T00:00:00+11:00, the end of 31 December in Sydney
AU_USER, NZ_USER = "max@harbour.example", "leo@kauri.example"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    # Text messages can go out (to the log), so the pages may offer them where policy does.
    running: RunningGateway = await make_gateway(policies=True, sms={"driver": "log"})
    return running


async def dismiss(client: object, page_text: str, next_target: str = "/") -> int:
    match = CSRF.search(page_text)
    assert match
    response = await client.post(  # type: ignore[attr-defined]
        "/_gateway/mfa/dismiss",
        data={"csrf": match[1], "next": next_target},
        allow_redirects=False,
    )
    return int(response.status)


async def test_in_scope_user_is_prompted_with_the_days_left(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        response = await client.get("/reports", headers=HTML, allow_redirects=False)
        assert response.status == 302
        location = URL(response.headers["Location"])
        assert location.path == "/_gateway/mfa/prompt"
        assert location.query["next"] == "/reports"
        page = await client.get(str(location), headers=HTML)
        text = await page.text()
    assert page.status == 200
    assert "9 days left" in text
    assert "31 December 2026, 23:59 (Australia/Sydney)" in text
    assert "Set up now" in text
    assert "Remind me later" in text


async def test_api_calls_of_a_prompted_user_go_on_in_grace(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        body = await (await client.get("/api/whoami", headers=JSON)).json()
    assert body["headers"]["X-Gateway-Mfa"] == "grace"


async def test_out_of_scope_user_is_never_prompted(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=NZ_USER)
        response = await client.get("/", headers=HTML, allow_redirects=False)
        body = await (await client.get("/api/whoami", headers=JSON)).json()
    assert response.status == 200
    assert body["headers"]["X-Gateway-Mfa"] == "not-required"


async def test_remind_me_later_lets_the_user_through_for_the_session(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        page = await client.get("/_gateway/mfa/prompt?next=/reports", headers=HTML)
        assert await dismiss(client, await page.text(), "/reports") == 303
        response = await client.get("/reports", headers=HTML, allow_redirects=False)
        body = await (await client.get("/api/whoami", headers=JSON)).json()
    assert response.status in (200, 404)  # reached the app
    assert body["headers"]["X-Gateway-Mfa"] == "grace"
    user = await gateway.services.store.users.find_by_email(AU_USER)
    assert user is not None
    assert await gateway.services.store.dismissals.count(user.id, PROMPT_KEY) == 1
    events = await gateway.services.store.audit.list(kind="mfa.prompt_dismissed")
    assert [e.subject for e in events] == [user.id]
    assert events[0].detail["policies"] == ["au-ato-2fa"]


async def test_dismissal_without_csrf_token_is_refused(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        response = await client.post(
            "/_gateway/mfa/dismiss", data={"next": "/"}, allow_redirects=False
        )
        still = await client.get("/", headers=HTML, allow_redirects=False)
    assert response.status == 403
    assert URL(still.headers["Location"]).path == "/_gateway/mfa/prompt"


async def test_after_the_deadline_the_user_is_blocked(gateway: RunningGateway) -> None:
    gateway.clock.set(DEADLINE - 60)
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        assert (await client.get("/api/whoami", headers=JSON)).status == 200
        gateway.clock.advance(60)  # a cached decision must not outlive the deadline
        page = await client.get("/reports", headers=HTML, allow_redirects=False)
        api = await client.get("/api/whoami", headers=JSON)
        problem = await api.json(content_type=None)
        blocked = await client.get("/_gateway/mfa/blocked?next=/reports", headers=HTML)
        blocked_text = await blocked.text()
        public = await client.get("/public/hello")
    assert URL(page.headers["Location"]).path == "/_gateway/mfa/blocked"
    assert api.status == 403
    assert problem["type"].endswith("/mfa-enrolment-required")
    assert problem["enrol_url"] == "/_gateway/mfa/enrol"
    assert problem["policy_ids"] == ["au-ato-2fa"]
    assert "has passed" in problem["detail"]
    assert blocked.status == 200
    assert "Two-factor authentication is now required" in blocked_text
    assert public.status == 200


async def test_a_dismissed_session_is_blocked_once_the_deadline_passes(
    gateway: RunningGateway,
) -> None:
    gateway.clock.set(DEADLINE - 60)
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        page = await client.get("/_gateway/mfa/prompt", headers=HTML)
        await dismiss(client, await page.text())
        assert (await client.get("/api/whoami", headers=JSON)).status == 200
        gateway.clock.advance(60)
        response = await client.get("/api/whoami", headers=JSON)
    assert response.status == 403


async def test_the_dismissal_cap_makes_the_prompt_blocking(gateway: RunningGateway) -> None:
    await cap_dismissals(gateway.services.store, 1, now=START)
    await gateway.services.decider.book.refresh()
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        page = await client.get("/_gateway/mfa/prompt", headers=HTML)
        text = await page.text()
        assert "You can postpone this 1 more time." in text
        assert await dismiss(client, text) == 303
    async with gateway.client() as client:  # a new session: the cap is used up
        await sign_in(client, email=AU_USER)
        response = await client.get("/", headers=HTML, allow_redirects=False)
    assert URL(response.headers["Location"]).path == "/_gateway/mfa/blocked"


async def test_disabling_the_policy_takes_effect_on_the_next_request(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 302
        store = gateway.services.store
        stored = await store.policies.get("au-ato-2fa")
        await store.policies.set_enabled(
            policy_id="au-ato-2fa",
            enabled=False,
            expected_version=stored.version,
            now=START,
            by="test",
        )
        await gateway.services.decider.book.refresh()  # what the refresher does every 2 s
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 200


async def test_unlinking_the_australian_tenant_ends_the_prompt(gateway: RunningGateway) -> None:
    store = gateway.services.store
    org = await store.organisations.find_by_name("Harbour Accounting (AU)")
    assert org is not None
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 302
        (tenant,) = await store.tenants.for_org(org.id)
        await store.tenants.unlink(org.id, tenant.tenant_id, START)
        await gateway.services.decider.book.refresh()
        assert (await client.get("/", headers=HTML, allow_redirects=False)).status == 200


async def test_warm_request_with_policies_in_force_runs_no_sql(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        assert (await client.get("/api/whoami", headers=JSON)).status == 200
        before = gateway.services.store.db.statement_count
        for _ in range(20):
            assert (await client.get("/api/whoami", headers=JSON)).status == 200
        assert gateway.services.store.db.statement_count == before


async def test_interstitial_pages_need_a_session(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        response = await client.get(
            "/_gateway/mfa/prompt?next=/x", headers=HTML, allow_redirects=False
        )
    assert URL(response.headers["Location"]).path == "/_gateway/login"


async def test_each_page_sends_the_user_to_the_one_for_their_state(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        early = await client.get("/_gateway/mfa/blocked?next=/a", allow_redirects=False)
        gateway.clock.advance(DEADLINE - START)
        await sign_in(client, email=AU_USER)
        late = await client.get("/_gateway/mfa/prompt?next=/a", allow_redirects=False)
    async with gateway.client() as client:
        await sign_in(client, email=NZ_USER)
        free = await client.get("/_gateway/mfa/prompt?next=/a", allow_redirects=False)
    assert early.headers["Location"] == "/_gateway/mfa/prompt?next=/a"
    assert late.headers["Location"] == "/_gateway/mfa/blocked?next=/a"
    assert free.headers["Location"] == "/a"


async def _page(client: object, path: str) -> str:
    response = await client.get(path, headers=HTML)  # type: ignore[attr-defined]
    assert response.status == 200, path
    return str(await response.text())


def _visible(page: str) -> str:
    """What a person reads on a page: its text, without tags and their attributes (form
    actions such as /_gateway/mfa/enrol/totp are addresses, not words shown)."""
    return re.sub(r"<[^>]*>", " ", page)


async def test_the_prompt_names_methods_in_words_and_the_deadline_once(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        text = _visible(await _page(client, "/_gateway/mfa/prompt"))
    assert "au-ato-2fa" not in text  # the policy's id is for admins
    assert not re.search(r"\b(sms|totp)\b", text)
    assert "an authenticator app or a text message" in text
    assert text.count("31 December 2026") == 1


async def test_text_messages_are_named_only_where_this_gateway_can_send_them(
    make_gateway: GatewayFactory,
) -> None:
    no_sms = await make_gateway(policies=True)  # the policy accepts SMS; no provider is set
    async with no_sms.client() as client:
        await sign_in(client, email=AU_USER)
        prompt = _visible(await _page(client, "/_gateway/mfa/prompt"))
        enrol = _visible(await _page(client, "/_gateway/mfa/enrol"))
    assert "entering a code from an authenticator app each time" in " ".join(prompt.split())
    assert "text message" not in prompt
    assert "text message" not in enrol


async def test_the_set_up_page_names_methods_in_words(gateway: RunningGateway) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        text = _visible(await _page(client, "/_gateway/mfa/enrol"))
    assert "au-ato-2fa" not in text
    assert not re.search(r"\b(sms|totp)\b", text)
    assert "authenticator app" in text


async def test_the_blocked_page_names_no_policy_id_or_method_code(
    gateway: RunningGateway,
) -> None:
    gateway.clock.set(DEADLINE)
    async with gateway.client() as client:
        await sign_in(client, email=AU_USER)
        text = await _page(client, "/_gateway/mfa/blocked")
    assert "au-ato-2fa" not in text
    assert not re.search(r"\b(sms|totp)\b", text)
    assert "31 December 2026, 23:59 (Australia/Sydney), has passed" in text
    assert "set up an authenticator app or a text message" in text


async def test_a_user_no_policy_covers_is_told_so_once_on_the_set_up_page(
    gateway: RunningGateway,
) -> None:
    async with gateway.client() as client:
        await sign_in(client, email=NZ_USER)
        text = await _page(client, "/_gateway/mfa/enrol")
    assert "does not need two-factor authentication" in text
    assert "reminder period" not in text
    assert "policy" not in text.lower()
