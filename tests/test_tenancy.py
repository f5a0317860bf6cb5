"""Tests for organisation lookup."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import NotFoundError
from gateway.store import Organisation, Store
from gateway.tenancy import find_org


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "gateway.sqlite3")
    yield opened
    await opened.close()


@pytest.fixture
async def org(store: Store) -> Organisation:
    return await store.organisations.add(name="Harbour", now=1.0)


async def test_an_organisation_is_found_by_name_then_by_id(store: Store, org: Organisation) -> None:
    assert await find_org(store, "Harbour") == org
    assert await find_org(store, org.id) == org
    with pytest.raises(NotFoundError, match="Nowhere"):
        await find_org(store, "Nowhere")
