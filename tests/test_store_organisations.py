"""Tests for the organisation repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import ConflictError, NotFoundError
from gateway.store import Organisation, Store


async def test_an_added_organisation_can_be_read_back(store: Store) -> None:
    org = await store.organisations.add(name="Acme Pty Ltd", now=100.0)
    assert org.id.startswith("org_")
    assert len(org.id) == len("org_") + 16
    assert org == Organisation(id=org.id, name="Acme Pty Ltd", created_at=100.0)
    assert await store.organisations.get(org.id) == org
    assert await store.organisations.find_by_name("Acme Pty Ltd") == org


async def test_a_given_id_is_used(store: Store) -> None:
    org = await store.organisations.add(name="Acme", now=1.0, org_id="org_acme")
    assert org.id == "org_acme"
    assert (await store.organisations.get("org_acme")).name == "Acme"


async def test_generated_ids_differ(store: Store) -> None:
    first = await store.organisations.add(name="One", now=1.0)
    second = await store.organisations.add(name="Two", now=1.0)
    assert first.id != second.id


async def test_a_duplicate_name_is_rejected(store: Store) -> None:
    await store.organisations.add(name="Acme", now=1.0)
    with pytest.raises(ConflictError, match="Acme"):
        await store.organisations.add(name="Acme", now=2.0)
    assert len(await store.organisations.list()) == 1


async def test_a_duplicate_id_is_rejected(store: Store) -> None:
    await store.organisations.add(name="One", now=1.0, org_id="org_x")
    with pytest.raises(ConflictError, match="org_x"):
        await store.organisations.add(name="Two", now=1.0, org_id="org_x")


async def test_getting_an_unknown_organisation_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="org_nope"):
        await store.organisations.get("org_nope")


async def test_finding_an_unknown_name_gives_none(store: Store) -> None:
    assert await store.organisations.find_by_name("Nobody") is None


async def test_organisations_are_listed_in_the_order_they_were_added(store: Store) -> None:
    assert await store.organisations.list() == []
    names = ["Zeta", "Alpha", "Mu"]
    added = [await store.organisations.add(name=name, now=1.0) for name in names]
    assert await store.organisations.list() == added


async def test_organisations_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    async with await Store.open(path) as store:
        org = await store.organisations.add(name="Acme", now=5.0)
    async with await Store.open(path) as store:
        assert await store.organisations.get(org.id) == org
