"""Xero grants and connections in the store: saved in one transaction, listed, and marked."""

from __future__ import annotations

import pytest

from gateway.crypto.keys import Keys
from gateway.errors import ConflictError, StoreError
from gateway.store import Store
from gateway.store.xero import NewConnection, SealedTokens, access_token_aad, refresh_token_aad
from tests.conftest import SECRET, START

SEALER = Keys.derive(SECRET).at_rest


def sealed(grant_id: str) -> SealedTokens:
    return SealedTokens(
        access_sealed=SEALER.seal(b"a", access_token_aad(grant_id, 1)),
        refresh_sealed=SEALER.seal(b"r", refresh_token_aad(grant_id, 1)),
        expires_at=START + 1800,
        scopes=("offline_access",),
    )


def tenant(n: int) -> NewConnection:
    return NewConnection(
        id=f"conn-{n}", tenant_id=f"t-{n}", tenant_type="ORGANISATION", tenant_name=f"T{n}"
    )


async def add(store: Store, org_id: str, grant_id: str, *conns: NewConnection) -> None:
    await store.xero.add(
        grant_id=grant_id,
        org_id=org_id,
        auth_event_id="ae-1",
        connected_by="usr_1",
        tokens=sealed(grant_id),
        connections=conns,
        now=START,
    )


async def test_a_grant_and_its_tenants_are_saved_together_or_not_at_all(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    await add(store, org.id, "xgr_1", tenant(1), tenant(2))
    grant = await store.xero.require("xgr_1")
    assert (grant.version, grant.status, grant.auth_event_id) == (1, "active", "ae-1")
    assert grant.refresh_token_issued_at == START
    assert grant.last_refresh_at is None
    assert [c.tenant_id for c in await store.xero.connections("xgr_1")] == ["t-1", "t-2"]
    # A connection id Xero gave already: nothing of the second grant is kept.
    with pytest.raises(ConflictError):
        await add(store, org.id, "xgr_2", tenant(3), tenant(1))
    assert await store.xero.get("xgr_2") is None
    assert [c.id for c in await store.xero.connections_for_org(org.id)] == ["conn-1", "conn-2"]
    with pytest.raises(StoreError):
        await add(store, org.id, "xgr_3")


async def test_statuses_move_as_marked(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    await add(store, org.id, "xgr_1", tenant(1), tenant(2))
    assert await store.xero.mark_removed_at_xero("conn-2", now=START + 1)
    assert not await store.xero.mark_removed_at_xero("conn-2", now=START + 2)
    assert (await store.xero.connection_for_tenant(org.id, "t-2")) is None
    found = await store.xero.connection_for_tenant(org.id, "t-1")
    assert found is not None
    assert found.grant_id == "xgr_1"
    assert await store.xero.mark("xgr_1", "disconnected", now=START + 3)
    assert not await store.xero.mark("xgr_1", "needs_reconnect", now=START + 4)
    statuses = {c.id: c.status for c in await store.xero.connections("xgr_1")}
    assert statuses == {"conn-1": "disconnected", "conn-2": "removed_at_xero"}
    assert [g.status for g in await store.xero.for_org(org.id)] == ["disconnected"]
    with pytest.raises(StoreError):
        await store.xero.mark("xgr_1", "active", now=START)


async def test_a_verified_use_never_moves_back(store: Store) -> None:
    org = await store.organisations.add(name="Harbour", now=START)
    await add(store, org.id, "xgr_1", tenant(1))
    await store.xero.record_verified_use("xgr_1", START + 10)
    await store.xero.record_verified_use("xgr_1", START + 5)
    assert (await store.xero.require("xgr_1")).verified_use_at == START + 10
