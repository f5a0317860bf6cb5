"""Admin API reads and tenant links: explain a decision, readiness, organisations, audit trail."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from yarl import URL

from gateway.audit import Event
from gateway.enforcement.decisions import PROMPT_KEY
from gateway.errors import StoreError
from gateway.sandbox.demo import DEMO_ACTOR
from gateway.sandbox.xero_emulator import AU_TENANT as EMULATED_AU
from gateway.store import AuditEvent
from gateway.store import tenants as store_tenants
from tests.conftest import START, GatewayFactory, RunningGateway, sign_in
from tests.test_admin_support import (
    API,
    AU_MEMBER,
    AU_ORG,
    AU_POLICY,
    HTML,
    NZ_MEMBER,
    NZ_ORG,
    bearer,
    mint,
    org_id,
    problem,
)

EXPLAIN = f"{API}/decisions/explain"
READINESS = f"{API}/reports/readiness"
AU_TENANT = EMULATED_AU.tenant_id
# The demo links it by hand (source manual): no Xero connection behind it.
MANUAL_AU = {
    "tenant_id": AU_TENANT,
    "name": "Harbour Accounting Pty Ltd",
    "country_code": "AU",
    "source": "manual",
    "grant_id": None,
    "connection_id": None,
}


@dataclass(frozen=True, kw_only=True)
class Numbered(Event):
    kind = "test.event"
    n: int


async def changes(gateway: RunningGateway, kind: str) -> list[AuditEvent]:
    """The events of ``kind`` after the demo's set-up (which links the demo tenants itself)."""
    events = await gateway.services.store.audit.list(kind=kind)
    return [event for event in events if event.actor != DEMO_ACTOR]


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


@pytest.fixture
async def token(gateway: RunningGateway) -> str:
    return await mint(gateway, "policies:read", "reports:read", "orgs:write", "audit:read")


async def explained(gateway: RunningGateway, token: str, **query: str) -> dict[str, Any]:
    async with gateway.client() as http:
        response = await http.get(EXPLAIN, params=query, headers=bearer(token))
        assert response.status == 200, await response.text()
        assert response.headers["Cache-Control"] == "no-store"
        body: dict[str, Any] = await response.json()
    return body


async def test_explain_the_au_member_at_start(gateway: RunningGateway, token: str) -> None:
    body = await explained(gateway, token, user=AU_MEMBER)
    assert body["outcome"] == "prompt"
    assert body["policy_ids"] == [AU_POLICY]
    assert body["days_left"] == 9
    assert body["deadline"] == "2026-12-31T23:59:59.999999+11:00"
    assert body["dismissals_left"] is None  # the shipped policy sets no cap
    assert body["mfa_header"] == "not-required"
    assert "9 days left" in body["reason"]
    assert body["at"] == "2026-12-23T04:26:40+00:00"  # the gateway's clock, START
    assert body["session"] == {"mfa_verified": False, "dismissed": False, "dismissals": 0}
    assert body["user"]["org_name"] == AU_ORG
    assert body["facts"]["tenants"] == [
        {
            "tenant_id": AU_TENANT,
            "name": "Harbour Accounting Pty Ltd",
            "country_code": "AU",
            "active": True,
        }
    ]
    assert body["policies"] == [
        {
            "policy_id": AU_POLICY,
            "enabled": True,
            "applies": True,
            "code": "in-scope",
            "why": "the organisation has an active tenant in AU",
            "came_from": [MANUAL_AU],
        }
    ]


async def test_explain_the_nz_member(gateway: RunningGateway, token: str) -> None:
    body = await explained(gateway, token, user=NZ_MEMBER)
    assert body["outcome"] == "allow"
    assert body["policy_ids"] == []
    assert body["days_left"] is None
    (scope,) = body["policies"]
    assert scope["applies"] is False
    assert scope["code"] == "no-active-tenant-in-countries"
    assert scope["why"].startswith("no active tenant in AU")
    assert "active tenants are in NZ" in scope["why"]


async def test_explain_after_the_deadline_is_enrol(gateway: RunningGateway, token: str) -> None:
    body = await explained(gateway, token, user=AU_MEMBER, at="2027-01-05")
    assert body["outcome"] == "enrol"
    assert body["at"] == "2027-01-05T00:00:00+00:00"
    assert "has passed" in body["reason"]


async def test_explain_counts_stored_dismissals_and_takes_a_user_id(
    gateway: RunningGateway, token: str
) -> None:
    user = await gateway.services.store.users.find_by_email(AU_MEMBER)
    assert user is not None
    await gateway.services.store.dismissals.record(user.id, PROMPT_KEY, START, limit=None)
    body = await explained(gateway, token, user=user.id, at="2026-12-30T09:00:00+11:00")
    assert body["session"]["dismissals"] == 1
    assert body["days_left"] == 2
    assert body["user"]["email"] == AU_MEMBER


async def test_explain_says_why_a_policy_does_not_apply(
    gateway: RunningGateway, token: str
) -> None:
    before = await explained(gateway, token, user=AU_MEMBER, at="2026-10-01")
    assert before["outcome"] == "allow"
    assert before["policies"][0]["code"] == "not-announced"
    stored = await gateway.services.store.policies.get(AU_POLICY)
    await gateway.services.store.policies.set_enabled(
        policy_id=AU_POLICY, enabled=False, expected_version=stored.version, now=START, by="t"
    )
    disabled = await explained(gateway, token, user=AU_MEMBER)
    assert disabled["outcome"] == "allow"
    assert disabled["policies"][0]["code"] == "disabled"


async def test_a_stored_policy_that_breaks_is_explained_as_the_version_kept_in_force(
    gateway: RunningGateway, token: str
) -> None:
    store = gateway.services.store
    stored = await store.policies.get(AU_POLICY)
    # A record that no longer parses (written by a newer release, say): the store accepts it,
    # and the running gateway keeps enforcing the version it had.
    await store.policies.replace(
        policy_id=AU_POLICY,
        document={**stored.document, "schedule": {"deadline": "someday"}},
        enabled=True,
        expected_version=stored.version,
        now=START,
        by="t",
    )
    await gateway.services.decider.book.refresh()
    assert [p.id for p in gateway.services.decider.book.policies] == [AU_POLICY]
    async with gateway.client() as user:
        await sign_in(user, email=AU_MEMBER)
        gated = await user.get("/", headers=HTML, allow_redirects=False)
    assert URL(gated.headers["Location"]).path == "/_gateway/mfa/prompt"  # still enforced

    body = await explained(gateway, token, user=AU_MEMBER)
    assert body["outcome"] == "prompt"
    assert body["policy_ids"] == [AU_POLICY]
    (scope,) = body["policies"]
    assert (scope["applies"], scope["code"]) == (True, "in-scope")
    assert "no longer parses, so the version in force stands" in scope["why"]
    async with gateway.client() as http:
        response = await http.get(READINESS, params={"at": "2026-12-23"}, headers=bearer(token))
        (report,) = (await response.json())["policies"]
    assert (report["policy_id"], report["in_scope"]) == (AU_POLICY, 2)


@pytest.mark.parametrize(
    ("query", "status", "slug"),
    [
        ({"user": "nobody@example.com"}, 404, "user-not-found"),
        ({"user": "usr_0000000000000000"}, 404, "user-not-found"),
        ({}, 400, "invalid-parameter"),
        ({"user": AU_MEMBER, "at": "next tuesday"}, 400, "invalid-parameter"),
        ({"user": AU_MEMBER, "at": "9999-12-31T23:59:59-23:00"}, 400, "invalid-parameter"),
    ],
)
async def test_explain_refuses_unknown_users_and_bad_instants(
    gateway: RunningGateway, token: str, query: dict[str, str], status: int, slug: str
) -> None:
    async with gateway.client() as http:
        response = await http.get(EXPLAIN, params=query, headers=bearer(token))
        body = await problem(response)
    assert response.status == status
    assert body["type"] == f"/_gateway/problems/{slug}"


async def test_an_offset_survives_a_plus_sent_unencoded(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as http:
        # A hand-written URL: the "+" arrives as a space once the query string is decoded.
        response = await http.get(
            f"{EXPLAIN}?user={AU_MEMBER}&at=2026-12-31T23:00:00+11:00", headers=bearer(token)
        )
        body = await response.json()
    assert body["at"] == "2026-12-31T12:00:00+00:00"
    assert body["days_left"] == 1


async def test_readiness_at_start(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        response = await http.get(READINESS, params={"at": "2026-12-23"}, headers=bearer(token))
        body = await response.json()
    assert response.status == 200
    (report,) = body["policies"]
    assert report["policy_id"] == AU_POLICY
    assert (report["in_scope"], report["enrolled"], report["blocked_at_deadline"]) == (2, 0, 2)
    assert report["orgs"] == [
        {
            "org_id": await org_id(gateway, AU_ORG),
            "org_name": AU_ORG,
            "in_scope": 2,
            "enrolled": 0,
            "blocked_at_deadline": 2,
            "came_from": [MANUAL_AU],
        }
    ]


async def test_tenant_links_are_checked_audited_and_take_effect(
    gateway: RunningGateway, token: str
) -> None:
    nz_org = await org_id(gateway, NZ_ORG)
    tenants = f"{API}/orgs/{nz_org}/tenants"
    link = {"tenant_id": "nz-au-branch", "name": "Kauri Australia Pty Ltd", "country_code": "AU"}
    async with gateway.client() as http:
        lower = await http.post(tenants, json={**link, "country_code": "au"}, headers=bearer(token))
        lower_body = await problem(lower)
        unknown = await http.post(
            tenants, json={"tenant_id": "", "country_code": "XX", "extra": 1}, headers=bearer(token)
        )
        unknown_body = await problem(unknown)
        linked = await http.post(tenants, json=link, headers=bearer(token))
        linked_body = await linked.json()
        again = await http.post(tenants, json=link, headers=bearer(token))
        nowhere = await http.post(f"{API}/orgs/org_nope/tenants", json=link, headers=bearer(token))
    assert lower.status == 422
    assert lower_body["type"] == "/_gateway/problems/tenant-invalid"
    assert lower_body["errors"] == [
        "country_code: 'au' is not an ISO 3166-1 alpha-2 country code (codes are upper case: 'AU')"
    ]
    assert unknown.status == 422
    assert len(unknown_body["errors"]) == 4  # extra key, empty id, no name, bad country
    assert linked.status == 201
    assert linked_body["changed"] is True
    assert linked_body["tenant"]["country_code"] == "AU"
    assert again.status == 200
    assert (await again.json())["changed"] is False
    assert nowhere.status == 404
    body = await explained(gateway, token, user=NZ_MEMBER)
    assert body["outcome"] == "prompt"
    assert body["policies"][0]["why"] == "the organisation has an active tenant in AU"
    (event,) = await changes(gateway, "org.tenant_linked")
    assert (event.subject, event.org_id) == ("nz-au-branch", nz_org)
    assert event.actor is not None
    assert event.actor.endswith("(ci)")
    assert event.detail["before"] is None
    assert event.detail["after"]["country_code"] == "AU"

    async with gateway.client() as http:
        unlinked = await http.delete(f"{tenants}/nz-au-branch", headers=bearer(token))
        missing = await http.delete(f"{tenants}/never-linked", headers=bearer(token))
    assert unlinked.status == 200
    assert (await unlinked.json())["tenant"]["active"] is False
    assert missing.status == 404
    assert (await explained(gateway, token, user=NZ_MEMBER))["outcome"] == "allow"
    (event,) = await changes(gateway, "org.tenant_unlinked")
    assert event.detail["before"]["active"] is True
    assert event.detail["after"]["active"] is False


async def test_orgs_are_listed_with_their_tenants(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        body = await (await http.get(f"{API}/orgs", headers=bearer(token))).json()
    orgs = {org["name"]: org for org in body["orgs"]}
    assert set(orgs) == {AU_ORG, NZ_ORG}
    assert orgs[AU_ORG]["users"] == 2
    assert [t["country_code"] for t in orgs[AU_ORG]["tenants"]] == ["AU"]
    assert [t["country_code"] for t in orgs[NZ_ORG]["tenants"]] == ["NZ"]


async def test_the_audit_trail_by_kind_time_and_page(gateway: RunningGateway, token: str) -> None:
    store = gateway.services.store
    for n in range(3):
        await store.audit.record(Numbered(n=n), at=START + n)
    async with gateway.client() as http:
        page = await (
            await http.get(
                f"{API}/audit", params={"kind": "test.event", "limit": "2"}, headers=bearer(token)
            )
        ).json()
        later = await (
            await http.get(
                f"{API}/audit",
                params={"kind": "test.event", "since": "2026-12-23T04:26:42Z"},
                headers=bearer(token),
            )
        ).json()
        bad = await http.get(f"{API}/audit", params={"limit": "0"}, headers=bearer(token))
        reader = await mint(gateway, "policies:read")
        refused = await http.get(f"{API}/audit", headers=bearer(reader))
    assert [e["detail"]["n"] for e in page["events"]] == [0, 1]
    assert page["more"] is True
    assert page["events"][0]["at"] == "2026-12-23T04:26:40+00:00"
    assert [e["detail"]["n"] for e in later["events"]] == [2]
    assert later["more"] is False
    assert bad.status == 400
    assert refused.status == 403


async def test_concurrent_identical_links_make_one_link_and_one_event(
    gateway: RunningGateway, token: str
) -> None:
    nz_org = await org_id(gateway, NZ_ORG)
    tenants = f"{API}/orgs/{nz_org}/tenants"
    link = {"tenant_id": "nz-au-branch", "name": "Kauri Australia Pty Ltd", "country_code": "AU"}
    async with gateway.client() as http:
        responses = await asyncio.gather(
            *(http.post(tenants, json=link, headers=bearer(token)) for _ in range(4))
        )
        bodies = [await response.json() for response in responses]
    assert sorted(response.status for response in responses) == [200, 200, 200, 201]
    assert sorted(body["changed"] for body in bodies) == [False, False, False, True]
    assert len(await changes(gateway, "org.tenant_linked")) == 1


async def test_a_tenant_change_whose_audit_event_fails_is_not_made(
    gateway: RunningGateway, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.services.store
    au_org = await org_id(gateway, AU_ORG)
    nz_org = await org_id(gateway, NZ_ORG)
    (before,) = await store.tenants.for_org(au_org)

    async def refuse(*args: Any, **kwargs: Any) -> int:
        raise StoreError("the audit table is unwritable")

    monkeypatch.setattr(store_tenants, "record_change", refuse)
    link = {"tenant_id": "nz-au-branch", "name": "Kauri Australia Pty Ltd", "country_code": "AU"}
    async with gateway.client() as http:
        linked = await http.post(f"{API}/orgs/{nz_org}/tenants", json=link, headers=bearer(token))
        unlinked = await http.delete(
            f"{API}/orgs/{au_org}/tenants/{before.tenant_id}", headers=bearer(token)
        )
    assert (linked.status, unlinked.status) == (500, 500)
    assert "nz-au-branch" not in {t.tenant_id for t in await store.tenants.all()}
    assert await store.tenants.for_org(au_org) == [before]
    assert await changes(gateway, "org.tenant_linked") == []
    assert await changes(gateway, "org.tenant_unlinked") == []
