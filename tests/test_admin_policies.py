"""Admin API policy endpoints on a real gateway: CRUD with ETags, preconditions, history, effect."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from yarl import URL

from gateway.admin.diff import diff_documents
from gateway.errors import StoreError
from gateway.store import policies as store_policies
from tests.conftest import START, GatewayFactory, RunningGateway, sign_in
from tests.test_admin_support import (
    API,
    AU_MEMBER,
    AU_POLICY,
    HTML,
    bearer,
    mint,
    problem,
    shipped_document,
)

POLICIES = f"{API}/policies"
AU = f"{POLICIES}/{AU_POLICY}"


@pytest.fixture
async def gateway(make_gateway: GatewayFactory) -> RunningGateway:
    running: RunningGateway = await make_gateway(policies=True)
    return running


@pytest.fixture
async def token(gateway: RunningGateway) -> str:
    return await mint(gateway, "policies:write")


def nz_document() -> dict[str, Any]:
    document = shipped_document()
    document["id"] = "nz-2fa"
    document["compliance_profile"] = "none"
    document["scope"]["countries"] = ["NZ"]
    return document


async def policy_events(gateway: RunningGateway) -> list[Any]:
    events = await gateway.services.store.audit.list()
    return [e for e in events if e.kind.startswith("policy.") and e.actor != "demo"]


async def test_create_answers_201_with_location_and_etag_1(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as http:
        created = await http.post(POLICIES, json=nz_document(), headers=bearer(token))
        body = await created.json()
        read = await http.get(created.headers["Location"], headers=bearer(token))
        read_body = await read.json()
    assert created.status == 201
    assert created.headers["Location"] == f"{POLICIES}/nz-2fa"
    assert created.headers["ETag"] == '"1"'
    assert created.headers["Cache-Control"] == "no-store"
    assert body["version"] == 1
    assert body["warnings"] == []
    assert read.status == 200
    assert read.headers["ETag"] == '"1"'
    assert read.headers["Cache-Control"] == "no-store"
    assert read_body["document"] == body["document"]
    assert read_body["document"]["scope"]["countries"] == ["NZ"]
    assert gateway.services.decider.book.policies[-1].id == "nz-2fa"  # in force already


async def test_crud_round_trip_moves_the_etag_with_every_change(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as http:
        read = await http.get(AU, headers=bearer(token))
        assert read.headers["ETag"] == '"1"'
        document = (await read.json())["document"]
        document["description"] = "Tightened by the admin API."
        replaced = await http.put(AU, json=document, headers=bearer(token, **{"If-Match": '"1"'}))
        assert replaced.status == 200
        assert replaced.headers["ETag"] == '"2"'
        assert (await replaced.json())["changed"] is True
        reread = await http.get(AU, headers=bearer(token))
        assert reread.headers["ETag"] == '"2"'
        assert (await reread.json())["document"]["description"] == "Tightened by the admin API."
        disabled = await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"2"'}))
        assert disabled.headers["ETag"] == '"3"'
        assert (await disabled.json())["document"]["enabled"] is False
        enabled = await http.post(f"{AU}/enable", headers=bearer(token, **{"If-Match": '"3"'}))
        assert enabled.headers["ETag"] == '"4"'
        deleted = await http.delete(AU, headers=bearer(token, **{"If-Match": '"4"'}))
        deleted_body = await deleted.json()
        gone = await http.get(AU, headers=bearer(token))
        history = await (await http.get(f"{AU}/versions", headers=bearer(token))).json()
    assert deleted.status == 200
    assert deleted_body["change"] == "delete"
    assert deleted_body["version"] == 5
    assert gone.status == 404
    assert (await problem(gone))["type"] == "/_gateway/problems/policy-not-found"
    assert [v["change"] for v in history["versions"]] == [
        "create",
        "replace",
        "disable",
        "enable",
        "delete",
    ]
    assert gateway.services.decider.book.policies == ()


async def test_a_stale_if_match_is_412_and_changes_nothing(
    gateway: RunningGateway, token: str
) -> None:
    store = gateway.services.store
    set_version = await store.policies.set_version()
    document = shipped_document()
    document["description"] = "A lost update."
    async with gateway.client() as http:
        put = await http.put(AU, json=document, headers=bearer(token, **{"If-Match": '"7"'}))
        weak = await http.put(AU, json=document, headers=bearer(token, **{"If-Match": 'W/"1"'}))
        disable = await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"0"'}))
        delete = await http.delete(AU, headers=bearer(token, **{"If-Match": '"2", "3"'}))
    for response in (put, weak, disable, delete):
        assert response.status == 412
        body = await problem(response)
        assert body["type"] == "/_gateway/problems/precondition-failed"
        assert body["current_version"] == 1
    stored = await store.policies.get(AU_POLICY)
    assert stored.version == 1
    assert stored.enabled is True
    assert stored.document == shipped_document()
    assert await store.policies.set_version() == set_version
    assert await policy_events(gateway) == []


async def test_any_of_several_entity_tags_may_match(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        response = await http.post(
            f"{AU}/disable", headers=bearer(token, **{"If-Match": '"9", "1"'})
        )
    assert response.status == 200
    assert response.headers["ETag"] == '"2"'


@pytest.mark.parametrize(
    ("method", "suffix", "if_match"),
    [
        ("PUT", "", None),
        ("DELETE", "", None),
        ("POST", "/enable", None),
        ("POST", "/disable", None),
        ("PUT", "", "*"),
        ("DELETE", "", "*"),
    ],
)
async def test_writes_without_if_match_are_428(
    gateway: RunningGateway, token: str, method: str, suffix: str, if_match: str | None
) -> None:
    headers = bearer(token) if if_match is None else bearer(token, **{"If-Match": if_match})
    async with gateway.client() as http:
        response = await http.request(method, AU + suffix, json=shipped_document(), headers=headers)
    assert response.status == 428
    assert (await problem(response))["type"] == "/_gateway/problems/precondition-required"
    assert (await gateway.services.store.policies.get(AU_POLICY)).version == 1


async def test_a_malformed_if_match_is_400(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        response = await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": "1"}))
    assert response.status == 400
    assert (await problem(response))["type"] == "/_gateway/problems/invalid-parameter"


async def test_an_invalid_document_is_422_with_every_error(
    gateway: RunningGateway, token: str
) -> None:
    document = nz_document()
    document["scope"]["countries"] = ["nz"]  # codes are upper case
    document["windows"]["remember_device"] = "23 hours"
    document["attempts"]["max_failed"] = 0
    async with gateway.client() as http:
        response = await http.post(POLICIES, json=document, headers=bearer(token))
        body = await problem(response)
    assert response.status == 422
    assert body["type"] == "/_gateway/problems/policy-invalid"
    errors = body["errors"]
    assert len(errors) == 3
    assert any(e.startswith("scope.countries: unknown country code 'nz'") for e in errors)
    assert any(e.startswith("windows.remember_device: ") for e in errors)
    assert any(e.startswith("attempts.max_failed: must be at least 1") for e in errors)
    assert [p.id for p in await gateway.services.store.policies.list()] == [AU_POLICY]


async def test_put_needs_the_document_id_to_match_the_url(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as http:
        response = await http.put(
            AU, json=nz_document(), headers=bearer(token, **{"If-Match": '"1"'})
        )
        body = await problem(response)
    assert response.status == 422
    assert body["errors"] == ["id: must be 'au-ato-2fa', the id in the URL, not 'nz-2fa'"]


async def test_creating_an_existing_policy_is_409(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        response = await http.post(POLICIES, json=shipped_document(), headers=bearer(token))
    assert response.status == 409
    assert (await problem(response))["type"] == "/_gateway/problems/policy-exists"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "slug"),
    [
        (b"[1, 2]", "application/json", 400, "invalid-json"),
        (b'{"id": ', "application/json", 400, "invalid-json"),
        (b'{"id": "a", "id": "b"}', "application/json", 400, "invalid-json"),
        (b'{"version": NaN}', "application/json", 400, "invalid-json"),
        (b"\xff\xfe", "application/json", 400, "invalid-json"),
        (b"[" * 5000 + b"]" * 5000, "application/json", 400, "invalid-json"),
        (b"id=x", "application/x-www-form-urlencoded", 415, "unsupported-media-type"),
        (b'{"a": "' + b"x" * 70_000 + b'"}', "application/json", 413, "body-too-large"),
    ],
)
async def test_bodies_that_are_not_a_json_object_are_refused(
    gateway: RunningGateway, token: str, body: bytes, content_type: str, status: int, slug: str
) -> None:
    async with gateway.client() as http:
        response = await http.post(
            POLICIES, data=body, headers=bearer(token, **{"Content-Type": content_type})
        )
        assert response.status == status
        assert (await problem(response))["type"] == f"/_gateway/problems/{slug}"


async def test_lint_warnings_come_back_but_do_not_block(
    gateway: RunningGateway, token: str
) -> None:
    document = nz_document()
    document["compliance_profile"] = "ato-dsp-osf"
    document["windows"]["remember_device"] = "30d"
    async with gateway.client() as http:
        response = await http.post(POLICIES, json=document, headers=bearer(token))
        body = await response.json()
    assert response.status == 201
    assert [w["field"] for w in body["warnings"]] == ["windows.remember_device"]
    assert "under 24 hours" in body["warnings"][0]["message"]


async def test_replacing_with_the_same_document_changes_nothing(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as http:
        response = await http.put(
            AU, json=shipped_document(), headers=bearer(token, **{"If-Match": '"1"'})
        )
        body = await response.json()
    assert response.status == 200
    assert response.headers["ETag"] == '"1"'
    assert body["changed"] is False
    assert await policy_events(gateway) == []


async def test_disabling_takes_effect_on_the_very_next_request(
    gateway: RunningGateway, token: str
) -> None:
    async with gateway.client() as user, gateway.client() as admin:
        await sign_in(user, email=AU_MEMBER)
        prompted = await user.get("/", headers=HTML, allow_redirects=False)
        assert URL(prompted.headers["Location"]).path == "/_gateway/mfa/prompt"
        off = await admin.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"1"'}))
        assert off.status == 200
        through = await user.get("/", headers=HTML, allow_redirects=False)
        assert through.status == 200
        on = await admin.post(
            f"{AU}/enable", headers=bearer(token, **{"If-Match": off.headers["ETag"]})
        )
        assert on.status == 200
        again = await user.get("/", headers=HTML, allow_redirects=False)
    assert URL(again.headers["Location"]).path == "/_gateway/mfa/prompt"


async def test_versions_and_diff(gateway: RunningGateway, token: str) -> None:
    document = shipped_document()
    document["schedule"]["deadline"] = "2027-01-31T23:59:59.999999+11:00"
    document["description"] = "Deadline moved."
    async with gateway.client() as http:
        await http.put(AU, json=document, headers=bearer(token, **{"If-Match": '"1"'}))
        await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"2"'}))
        versions = await (await http.get(f"{AU}/versions", headers=bearer(token))).json()
        first = await (await http.get(f"{AU}/versions/1", headers=bearer(token))).json()
        moved = await (await http.get(f"{AU}/diff?from=1&to=2", headers=bearer(token))).json()
        latest = await (await http.get(f"{AU}/diff", headers=bearer(token))).json()
        missing = await http.get(f"{AU}/versions/9", headers=bearer(token))
        not_a_number = await http.get(f"{AU}/versions/x", headers=bearer(token))
        bad_from = await http.get(f"{AU}/diff?from=zero", headers=bearer(token))
    assert [(v["version"], v["change"], v["enabled"]) for v in versions["versions"]] == [
        (1, "create", True),
        (2, "replace", True),
        (3, "disable", False),
    ]
    assert versions["versions"][1]["by"].endswith("(ci)")
    assert first["document"] == shipped_document()
    assert moved["changes"] == [
        {
            "path": "description",
            "kind": "changed",
            "before": shipped_document()["description"],
            "after": "Deadline moved.",
        },
        {
            "path": "schedule.deadline",
            "kind": "changed",
            "before": "2026-12-31T23:59:59.999999+11:00",
            "after": "2027-01-31T23:59:59.999999+11:00",
        },
    ]
    assert (latest["from"]["version"], latest["to"]["version"]) == (2, 3)
    assert latest["changes"] == [
        {"path": "enabled", "kind": "changed", "before": True, "after": False}
    ]
    assert missing.status == 404
    assert not_a_number.status == 404
    assert (await problem(missing))["type"] == "/_gateway/problems/version-not-found"
    assert bad_from.status == 400


async def test_every_change_is_audited_with_actor_before_and_after(
    gateway: RunningGateway,
) -> None:
    token = await mint(gateway, "policies:write", name="release-bot")
    (token_record,) = await gateway.services.store.admin_tokens.list()
    changed = nz_document()
    changed["description"] = "Changed."
    async with gateway.client() as http:
        await http.post(POLICIES, json=nz_document(), headers=bearer(token))
        nz = f"{POLICIES}/nz-2fa"
        await http.put(nz, json=changed, headers=bearer(token, **{"If-Match": '"1"'}))
        await http.post(f"{nz}/disable", headers=bearer(token, **{"If-Match": '"2"'}))
        await http.post(f"{nz}/enable", headers=bearer(token, **{"If-Match": '"3"'}))
        await http.delete(nz, headers=bearer(token, **{"If-Match": '"4"'}))
    events = await policy_events(gateway)
    assert [e.kind for e in events] == [
        "policy.created",
        "policy.replaced",
        "policy.disabled",
        "policy.enabled",
        "policy.deleted",
    ]
    for event in events:
        assert event.actor == f"{token_record.id} (release-bot)"
        assert event.subject == "nz-2fa"
        assert event.at == START
        assert event.client_addr == "127.0.0.1"
        assert {"before", "after", "version", "request_id"} <= event.detail.keys()
    created, replaced, disabled, enabled, deleted = (e.detail for e in events)
    assert created["before"] is None
    assert created["after"]["id"] == "nz-2fa"
    assert replaced["before"]["description"] != replaced["after"]["description"]
    assert diff_documents(disabled["before"], disabled["after"]) == [
        {"path": "enabled", "kind": "changed", "before": True, "after": False}
    ]
    assert enabled["after"]["enabled"] is True
    assert deleted["after"] is None
    assert deleted["before"]["description"] == "Changed."


async def test_unknown_paths_and_methods_under_the_api(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        unknown = await http.get(f"{API}/nothing-here", headers=bearer(token))
        patch = await http.patch(AU, headers=bearer(token))
    assert unknown.status == 404
    assert (await problem(unknown))["type"] == "/_gateway/problems/not-found"
    assert patch.status == 405
    assert patch.headers["Allow"] == "DELETE, GET, PUT"
    assert (await problem(patch))["type"] == "/_gateway/problems/method-not-allowed"


async def test_the_list_shows_versions_and_enabled(gateway: RunningGateway, token: str) -> None:
    async with gateway.client() as http:
        await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"1"'}))
        body = await (await http.get(POLICIES, headers=bearer(token))).json()
    (item,) = body["policies"]
    assert (item["id"], item["version"], item["enabled"], item["valid"]) == (
        AU_POLICY,
        2,
        False,
        True,
    )


def test_diff_names_added_and_removed_leaves_and_tells_true_from_one() -> None:
    before = {"a": 1, "b": {"c": [1, 2], "d": True}, "gone": {"x": 1}}
    after = {"a": 1.0, "b": {"c": [1, 2], "d": 1, "new": {"y": 2}}}
    assert diff_documents(before, copy.deepcopy(before)) == []
    assert json.loads(json.dumps(diff_documents(before, after))) == [
        {"path": "a", "kind": "changed", "before": 1, "after": 1.0},
        {"path": "b.d", "kind": "changed", "before": True, "after": 1},
        {"path": "b.new.y", "kind": "added", "after": 2},
        {"path": "gone.x", "kind": "removed", "before": 1},
    ]


async def test_a_write_racing_ours_wins_and_ours_is_412(
    gateway: RunningGateway, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.services.store
    original = store.policies.replace

    async def after_a_rival(**kwargs: Any) -> Any:
        # Someone else disables the policy between our If-Match check and our write.
        await store.policies.set_enabled(
            policy_id=AU_POLICY, enabled=False, expected_version=1, now=START, by="rival"
        )
        return await original(**kwargs)

    monkeypatch.setattr(store.policies, "replace", after_a_rival)
    document = shipped_document()
    document["description"] = "Ours."
    async with gateway.client() as http:
        response = await http.put(AU, json=document, headers=bearer(token, **{"If-Match": '"1"'}))
        body = await problem(response)
    assert response.status == 412
    assert "version 2, not 1" in body["detail"]
    stored = await store.policies.get(AU_POLICY)
    assert (stored.version, stored.enabled, stored.updated_by) == (2, False, "rival")
    assert await policy_events(gateway) == []


async def test_a_change_whose_audit_event_fails_is_not_made(
    gateway: RunningGateway, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.services.store

    async def refuse(*args: Any, **kwargs: Any) -> int:
        raise StoreError("the audit table is unwritable")

    monkeypatch.setattr(store_policies, "record_change", refuse)
    changed = shipped_document()
    changed["description"] = "Never stored."
    async with gateway.client() as http:
        created = await http.post(POLICIES, json=nz_document(), headers=bearer(token))
        replaced = await http.put(AU, json=changed, headers=bearer(token, **{"If-Match": '"1"'}))
        disabled = await http.post(f"{AU}/disable", headers=bearer(token, **{"If-Match": '"1"'}))
        deleted = await http.delete(AU, headers=bearer(token, **{"If-Match": '"1"'}))
    assert [r.status for r in (created, replaced, disabled, deleted)] == [500] * 4
    assert [p.id for p in await store.policies.list()] == [AU_POLICY]
    stored = await store.policies.get(AU_POLICY)
    assert (stored.version, stored.enabled) == (1, True)
    assert stored.document["description"] != "Never stored."
    assert await policy_events(gateway) == []
