"""Tests for the tenant repository and facts version, and the user-base summaries beside them."""

from __future__ import annotations

import asyncio

import pytest

from gateway.errors import NotFoundError, StoreError
from gateway.store import AuditEntry, NewUser, Organisation, Store, Tenant, tenant_document


@pytest.fixture
async def org(store: Store) -> Organisation:
    return await store.organisations.add(name="Harbour Accounting", now=1.0)


async def _link(
    store: Store,
    org: Organisation,
    tenant_id: str = "xt-1",
    *,
    name: str = "Harbour Pty Ltd",
    country_code: str = "AU",
    now: float = 10.0,
    source: str = "manual",
) -> Tenant:
    change = await store.tenants.link(
        org_id=org.id,
        tenant_id=tenant_id,
        name=name,
        country_code=country_code,
        now=now,
        source=source,
    )
    return change.after


# --- tenants ----------------------------------------------------------------------------------


async def test_a_linked_tenant_is_active_and_can_be_read_back(
    store: Store, org: Organisation
) -> None:
    tenant = await _link(store, org)
    assert tenant == Tenant(
        org_id=org.id,
        tenant_id="xt-1",
        name="Harbour Pty Ltd",
        country_code="AU",
        active=True,
        linked_at=10.0,
        checked_at=10.0,
        source="manual",
    )
    assert await store.tenants.for_org(org.id) == [tenant]
    assert await store.tenants.all() == [tenant]


async def test_linking_bumps_the_facts_version(store: Store, org: Organisation) -> None:
    assert await store.tenants.facts_version() == 0
    await _link(store, org, "xt-1")
    assert await store.tenants.facts_version() == 1
    await _link(store, org, "xt-2")
    assert await store.tenants.facts_version() == 2


async def test_relinking_updates_the_tenant_and_bumps_the_facts_version(
    store: Store, org: Organisation
) -> None:
    first = await _link(store, org, now=10.0)
    again = await _link(store, org, name="Harbour Group", source="xero", now=20.0)
    assert again == Tenant(
        org_id=org.id,
        tenant_id="xt-1",
        name="Harbour Group",
        country_code="AU",
        active=True,
        linked_at=first.linked_at,  # still the same link
        checked_at=20.0,
        source="xero",
    )
    assert await store.tenants.for_org(org.id) == [again]
    assert await store.tenants.facts_version() == 2


async def test_relinking_with_nothing_changed_only_moves_checked_at(
    store: Store, org: Organisation
) -> None:
    await _link(store, org, now=10.0)
    again = await _link(store, org, now=20.0)
    assert (again.linked_at, again.checked_at) == (10.0, 20.0)
    assert await store.tenants.for_org(org.id) == [again]
    assert await store.tenants.facts_version() == 1


async def test_unlinking_deactivates_the_tenant_and_bumps_the_facts_version(
    store: Store, org: Organisation
) -> None:
    await _link(store, org, now=10.0)
    await store.tenants.unlink(org.id, "xt-1", now=15.0)
    [tenant] = await store.tenants.for_org(org.id)
    assert (tenant.active, tenant.checked_at, tenant.linked_at) == (False, 15.0, 10.0)
    assert await store.tenants.facts_version() == 2
    await store.tenants.unlink(org.id, "xt-1", now=16.0)  # already unlinked: nothing changes
    assert await store.tenants.facts_version() == 2
    assert await store.tenants.for_org(org.id) == [tenant]


async def test_relinking_an_unlinked_tenant_reactivates_it_as_a_new_link(
    store: Store, org: Organisation
) -> None:
    await _link(store, org, now=10.0)
    await store.tenants.unlink(org.id, "xt-1", now=15.0)
    again = await _link(store, org, now=30.0)
    assert (again.active, again.linked_at, again.checked_at) == (True, 30.0, 30.0)
    assert await store.tenants.for_org(org.id) == [again]
    assert await store.tenants.facts_version() == 3


async def test_unlinking_an_unknown_tenant_raises_not_found(
    store: Store, org: Organisation
) -> None:
    with pytest.raises(NotFoundError, match="xt-none"):
        await store.tenants.unlink(org.id, "xt-none", now=1.0)
    assert await store.tenants.facts_version() == 0


async def test_linking_to_an_unknown_organisation_raises_not_found(store: Store) -> None:
    ghost = Organisation(id="org_ghost", name="Ghost", created_at=0.0)
    with pytest.raises(NotFoundError, match="org_ghost"):
        await _link(store, ghost)
    assert await store.tenants.all() == []
    assert await store.tenants.facts_version() == 0


async def test_an_unknown_source_is_refused(store: Store, org: Organisation) -> None:
    with pytest.raises(StoreError, match="source"):
        await _link(store, org, source="csv")
    assert await store.tenants.all() == []


async def test_tenants_are_listed_per_organisation_or_all(store: Store, org: Organisation) -> None:
    other = await store.organisations.add(name="Other", now=1.0)
    a = await _link(store, org, "xt-a")
    b = await _link(store, other, "xt-b")
    c = await _link(store, org, "xt-c")
    same_id_elsewhere = await _link(store, other, "xt-a")
    assert await store.tenants.for_org(org.id) == [a, c]
    assert await store.tenants.for_org(other.id) == [b, same_id_elsewhere]
    assert await store.tenants.for_org("org_none") == []
    assert await store.tenants.all() == [a, b, c, same_id_elsewhere]


# --- audited links -----------------------------------------------------------------------------

AUDIT = AuditEntry(actor="ops", client_addr="203.0.113.7", detail={"request_id": "r-1"})


async def test_a_link_tells_a_new_link_from_a_change_and_from_a_confirmation(
    store: Store, org: Organisation
) -> None:
    new = await store.tenants.link(
        org_id=org.id, tenant_id="xt-1", name="A", country_code="AU", now=10, audit=AUDIT
    )
    same = await store.tenants.link(
        org_id=org.id, tenant_id="xt-1", name="A", country_code="AU", now=20, audit=AUDIT
    )
    renamed = await store.tenants.link(
        org_id=org.id, tenant_id="xt-1", name="B", country_code="AU", now=30, audit=AUDIT
    )
    assert (new.created, new.changed, new.before) == (True, True, None)
    assert (same.created, same.changed) == (False, False)
    assert same.before == new.after
    assert same.after.checked_at == 20
    assert (renamed.created, renamed.changed) == (False, True)
    assert renamed.before == same.after
    events = await store.audit.list()
    assert [e.kind for e in events] == ["org.tenant_linked", "org.tenant_linked"]
    first, second = events
    assert (first.actor, first.subject, first.org_id, first.client_addr, first.at) == (
        "ops",
        "xt-1",
        org.id,
        "203.0.113.7",
        10,
    )
    assert first.detail["request_id"] == "r-1"
    assert first.detail["before"] is None
    assert first.detail["after"] == tenant_document(new.after)
    assert (first.detail["name"], first.detail["country_code"]) == ("A", "AU")
    assert second.detail["before"] == tenant_document(same.after)
    assert second.detail["after"]["name"] == "B"


async def test_an_unlink_is_audited_once(store: Store, org: Organisation) -> None:
    linked = await _link(store, org, now=10.0)
    gone = await store.tenants.unlink(org.id, "xt-1", 15.0, audit=AUDIT)
    again = await store.tenants.unlink(org.id, "xt-1", 16.0, audit=AUDIT)
    assert (gone.changed, gone.before, gone.after.active, gone.after.checked_at) == (
        True,
        linked,
        False,
        15.0,
    )
    assert [(await store.tenants.for_org(org.id))[0]] == [gone.after]
    assert (again.changed, again.before, again.after) == (False, gone.after, gone.after)
    (event,) = await store.audit.list()
    assert event.kind == "org.tenant_unlinked"
    assert event.detail["before"] == tenant_document(linked)
    assert event.detail["after"] == tenant_document(gone.after)


async def test_a_link_whose_audit_event_cannot_be_written_is_not_made(
    store: Store, org: Organisation
) -> None:
    unwritable = AuditEntry(actor="x", detail={"not json": object()})
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await store.tenants.link(
            org_id=org.id, tenant_id="xt-1", name="A", country_code="AU", now=1, audit=unwritable
        )
    assert await store.tenants.all() == []
    assert await store.tenants.facts_version() == 0
    await _link(store, org)
    with pytest.raises(StoreError, match="not JSON-serialisable"):
        await store.tenants.unlink(org.id, "xt-1", 2.0, audit=unwritable)
    assert [t.active for t in await store.tenants.all()] == [True]
    assert await store.tenants.facts_version() == 1
    assert await store.audit.list() == []


async def test_concurrent_identical_links_make_one_new_link_and_one_event(
    store: Store, org: Organisation
) -> None:
    changes = await asyncio.gather(
        *(
            store.tenants.link(
                org_id=org.id, tenant_id="xt-1", name="A", country_code="AU", now=10, audit=AUDIT
            )
            for _ in range(5)
        )
    )
    assert sum(change.created for change in changes) == 1
    assert sum(change.changed for change in changes) == 1
    assert len(await store.audit.list(kind="org.tenant_linked")) == 1
    assert await store.tenants.facts_version() == 1


# --- user-base summaries (UserRepository.count_by_org, list_all_light) -------------------------


def _new(org: Organisation, email: str, role: str = "member") -> NewUser:
    return NewUser(org_id=org.id, email=email, display_name=email, role=role, password_hash="h")


async def test_users_are_counted_per_organisation_leaving_out_disabled_ones(
    store: Store, org: Organisation
) -> None:
    other = await store.organisations.add(name="Other", now=1.0)
    empty = await store.organisations.add(name="Empty", now=1.0)
    users = await store.users.add_many(
        [_new(org, "a@x.com"), _new(org, "b@x.com"), _new(other, "c@x.com")], now=2.0
    )
    await store.users.set_disabled(users[1].id, True, now=0.0)
    assert await store.users.count_by_org() == {org.id: 1, other.id: 1, empty.id: 0}


async def test_list_all_light_gives_id_org_and_role_of_enabled_users_in_one_query(
    store: Store, org: Organisation
) -> None:
    other = await store.organisations.add(name="Other", now=1.0)
    users = await store.users.add_many(
        [
            _new(org, "a@x.com", "principal"),
            _new(other, "b@x.com"),
            _new(org, "c@x.com"),
            _new(org, "d@x.com"),
        ],
        now=2.0,
    )
    await store.users.set_disabled(users[3].id, True, now=0.0)
    before = store.db.statement_count
    light = await store.users.list_all_light()
    assert store.db.statement_count == before + 1
    assert light == [
        (users[0].id, org.id, "principal"),
        (users[1].id, other.id, "member"),
        (users[2].id, org.id, "member"),
    ]


async def test_list_all_light_stays_one_query_for_many_users(
    store: Store, org: Organisation
) -> None:
    await store.users.add_many([_new(org, f"u{n}@x.com") for n in range(2000)], now=2.0)
    before = store.db.statement_count
    light = await store.users.list_all_light()
    assert store.db.statement_count == before + 1
    assert len(light) == 2000
    assert await store.users.count_by_org() == {org.id: 2000}
