"""Admin tokens and the admin API's door: bearer tokens with scopes only, never a session."""

from __future__ import annotations

import hashlib
import re

import pytest

from gateway.admin.tokens import (
    MAX_TTL_SECONDS,
    AdminTokenError,
    authenticate,
    create_admin_token,
    revoke_admin_token,
)
from tests.conftest import START, GatewayFactory, RunningGateway, sign_in
from tests.test_admin_support import (
    API,
    AU_POLICY,
    HTML,
    bearer,
    mint,
    problem,
    shipped_document,
)

AU = f"{API}/policies/{AU_POLICY}"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


async def test_a_token_is_shown_once_and_stored_only_as_its_sha256(
    gateway: RunningGateway,
) -> None:
    store = gateway.services.store
    raw, token = await create_admin_token(
        store,
        name="deploy",
        scopes=["policies:write", "reports:read"],
        ttl_seconds=86400,
        now=START,
        by="cli",
    )
    assert raw.startswith("xgw_")
    assert len(raw) == 4 + 43
    assert token.scopes == {"policies:write", "reports:read"}
    assert token.expires_at == START + 86400
    row = await store.db.fetch_one("SELECT * FROM admin_tokens WHERE id = :id", {"id": token.id})
    assert row is not None
    assert row["token_hash"] == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in [str(value) for value in row.values()]
    (event,) = await store.audit.list(kind="admin_token.created")
    assert (event.actor, event.subject) == ("cli", token.id)
    assert event.detail == {
        "name": "deploy",
        "scopes": ["policies:write", "reports:read"],
        "expires_at": START + 86400,
    }
    assert raw not in str(event.detail)
    assert await authenticate(store, raw, START + 10) == token
    touched = await store.admin_tokens.find_by_hash(hashlib.sha256(raw.encode()).hexdigest())
    assert touched is not None
    assert touched.last_used_at == START + 10


@pytest.mark.parametrize(
    ("name", "scopes", "ttl", "message"),
    [
        ("x", ["policies:read"], MAX_TTL_SECONDS + 1, "365 days"),
        ("x", ["policies:read"], 0, "ttl_seconds"),
        ("x", [], 3600, "at least one scope"),
        ("x", ["root"], 3600, "unknown scope(s) root"),
        ("", ["admin"], 3600, "name"),
        ("bad\nname", ["admin"], 3600, "name"),
    ],
)
async def test_tokens_are_minted_only_as_the_rules_allow(
    gateway: RunningGateway, name: str, scopes: list[str], ttl: float, message: str
) -> None:
    with pytest.raises(AdminTokenError, match=re.escape(message)):
        await create_admin_token(
            gateway.services.store, name=name, scopes=scopes, ttl_seconds=ttl, now=START, by="t"
        )
    assert await gateway.services.store.admin_tokens.list() == []


async def test_no_token_is_401_with_a_bearer_challenge(gateway: RunningGateway) -> None:
    async with gateway.client() as http:
        response = await http.get(f"{API}/policies")
        body = await problem(response)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="gateway-admin"'
    assert body["type"] == "/_gateway/problems/admin-unauthenticated"


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer xgw_" + "A" * 43,  # well formed, never issued
        "Bearer not-a-token",
        "Basic dXNlcjpwYXNz",
        "Bearer ",
    ],
)
async def test_unknown_tokens_are_401(gateway: RunningGateway, authorization: str) -> None:
    async with gateway.client() as http:
        response = await http.get(f"{API}/policies", headers={"Authorization": authorization})
        body = await problem(response)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert body["type"] == "/_gateway/problems/admin-unauthenticated"


async def test_expired_and_revoked_tokens_are_refused(gateway: RunningGateway) -> None:
    short = await mint(gateway, "policies:read", ttl=60)
    revoked = await mint(gateway, "policies:read", name="leaked")
    (_, leaked) = await gateway.services.store.admin_tokens.list()
    async with gateway.client() as http:
        assert (await http.get(f"{API}/policies", headers=bearer(short))).status == 200
        assert (await http.get(f"{API}/policies", headers=bearer(revoked))).status == 200
        await revoke_admin_token(gateway.services.store, leaked.id, now=START, by="ops")
        gateway.clock.advance(60)
        expired = await http.get(f"{API}/policies", headers=bearer(short))
        refused = await http.get(f"{API}/policies", headers=bearer(revoked))
    for response in (expired, refused):
        assert response.status == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    (event,) = await gateway.services.store.audit.list(kind="admin_token.revoked")
    assert (event.actor, event.subject) == ("ops", leaked.id)


async def test_a_token_without_the_scope_is_403_and_changes_nothing(
    gateway: RunningGateway,
) -> None:
    reader = await mint(gateway, "reports:read")
    document = shipped_document()
    document["description"] = "Should not land."
    async with gateway.client() as http:
        put = await http.put(AU, json=document, headers=bearer(reader, **{"If-Match": '"1"'}))
        body = await problem(put)
        read = await http.get(AU, headers=bearer(reader))
        report = await http.get(f"{API}/reports/readiness", headers=bearer(reader))
    assert put.status == 403
    assert body["type"] == "/_gateway/problems/admin-forbidden"
    assert 'error="insufficient_scope"' in put.headers["WWW-Authenticate"]
    assert 'scope="policies:write"' in put.headers["WWW-Authenticate"]
    assert read.status == 403
    assert report.status == 200
    assert (await gateway.services.store.policies.get(AU_POLICY)).version == 1


async def test_policies_write_includes_read_and_admin_includes_everything(
    gateway: RunningGateway,
) -> None:
    writer = await mint(gateway, "policies:write")
    admin = await mint(gateway, "admin")
    async with gateway.client() as http:
        assert (await http.get(AU, headers=bearer(writer))).status == 200
        assert (await http.get(f"{API}/audit", headers=bearer(writer))).status == 403
        for path in ("/policies", "/audit", "/orgs", "/reports/readiness"):
            assert (await http.get(API + path, headers=bearer(admin))).status == 200


async def test_a_signed_in_principal_gets_no_admin_access(gateway: RunningGateway) -> None:
    store = gateway.services.store
    document = shipped_document()
    document["enabled"] = False
    async with gateway.client() as browser:
        signed_in = await sign_in(browser, email="ava@harbour.example")
        assert signed_in.status == 303
        listed = await browser.get(f"{API}/policies")
        html = await browser.get(f"{API}/policies", headers=HTML)
        put = await browser.put(AU, json=document, headers={"If-Match": '"1"'})
        disable = await browser.post(f"{AU}/disable", headers={"If-Match": '"1"'})
        bogus = await browser.post(
            f"{AU}/disable", headers={"If-Match": '"1"', "Authorization": "Bearer session"}
        )
        still_a_user = await browser.get("/api/whoami")
    for response in (listed, put, disable, bogus):
        assert response.status == 401
        assert (await problem(response))["type"] == "/_gateway/problems/admin-unauthenticated"
    assert html.status == 401
    assert html.content_type == "text/html"  # a browser gets the error page
    assert still_a_user.status == 200  # the session itself is fine, it just is not admin
    stored = await store.policies.get(AU_POLICY)
    assert (stored.version, stored.enabled) == (1, True)
    assert [e.kind for e in await store.audit.list() if e.kind.startswith("policy.")] == [
        "policy.created"  # the demo's, at start-up
    ]


async def test_last_use_is_written_at_most_once_a_minute(gateway: RunningGateway) -> None:
    raw = await mint(gateway, "policies:read")
    store = gateway.services.store
    (token,) = await store.admin_tokens.list()
    async with gateway.client() as http:
        for _ in range(3):
            assert (await http.get(f"{API}/policies", headers=bearer(raw))).status == 200
        (after_three,) = await store.admin_tokens.list()
        gateway.clock.advance(61)
        await http.get(f"{API}/policies", headers=bearer(raw))
    (later,) = await store.admin_tokens.list()
    assert token.last_used_at is None
    assert after_three.last_used_at == START
    assert later.last_used_at == START + 61
