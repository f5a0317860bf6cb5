"""Tests for the tenant repository and facts version, and the user-base summaries beside them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import NotFoundError, StoreError
from gateway.store import NewUser, Organisation, Store, Tenant


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "gateway.sqlite3")
    yield opened
    await opened.close()


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
    return await store.tenants.link(
        org_id=org.id,
        tenant_id=tenant_id,
        name=name,
        country_code=country_code,
        now=now,
        source=source,
    )


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
