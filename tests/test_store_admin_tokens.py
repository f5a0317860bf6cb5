"""Tests for the admin token repository: lookup by hash, revocation, use, and no hash leaks."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.errors import ConflictError, NotFoundError, StoreError
from gateway.store import AdminToken, Store

HASH = "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


async def _add(store: Store, token_hash: str = HASH, name: str = "ci") -> AdminToken:
    return await store.admin_tokens.add(
        token_hash=token_hash,
        name=name,
        scopes=["policy:write", "policy:read"],
        expires_at=1000.0,
        now=100.0,
        by="admin:ava",
    )


async def test_an_added_token_is_found_by_its_hash(store: Store) -> None:
    token = await _add(store)
    assert token == AdminToken(
        id=token.id,
        name="ci",
        scopes=frozenset({"policy:read", "policy:write"}),
        created_at=100.0,
        expires_at=1000.0,
        created_by="admin:ava",
        revoked_at=None,
        last_used_at=None,
    )
    assert token.id.startswith("atk_")
    assert await store.admin_tokens.find_by_hash(HASH) == token
    assert await store.admin_tokens.find_by_hash("sha256:other") is None
    assert await store.admin_tokens.list() == [token]


async def test_the_hash_is_stored_as_given_and_never_handed_back(store: Store) -> None:
    token = await _add(store)
    row = await store.db.fetch_one(
        "SELECT token_hash FROM admin_tokens WHERE id = :id", {"id": token.id}
    )
    assert row is not None
    assert row["token_hash"] == HASH
    fields = {field.name for field in dataclasses.fields(AdminToken)}
    assert not any("hash" in name for name in fields)
    for found in [token, await store.admin_tokens.find_by_hash(HASH), *await _listed(store)]:
        assert HASH not in repr(found)


async def _listed(store: Store) -> list[AdminToken]:
    return await store.admin_tokens.list()


async def test_a_hash_stored_twice_is_a_conflict(store: Store) -> None:
    await _add(store)
    with pytest.raises(ConflictError) as caught:
        await _add(store, name="again")
    assert HASH not in str(caught.value)
    assert len(await store.admin_tokens.list()) == 1


async def test_an_empty_hash_or_scope_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="hash"):
        await _add(store, token_hash="")
    with pytest.raises(StoreError, match="scopes"):
        await store.admin_tokens.add(
            token_hash=HASH, name="x", scopes=[""], expires_at=2.0, now=1.0, by="x"
        )
    assert await store.admin_tokens.list() == []


async def test_a_revoked_token_is_still_found_but_no_longer_usable(store: Store) -> None:
    token = await _add(store)
    assert token.usable(500.0)
    await store.admin_tokens.revoke(token.id, now=200.0)
    found = await store.admin_tokens.find_by_hash(HASH)
    assert found is not None
    assert found.revoked_at == 200.0
    assert not found.usable(500.0)
    await store.admin_tokens.revoke(token.id, now=300.0)  # the first revocation stands
    assert (await _listed(store))[0].revoked_at == 200.0


async def test_an_expired_token_is_not_usable(store: Store) -> None:
    token = await _add(store)
    assert token.usable(999.9)
    assert not token.usable(1000.0)


async def test_revoking_an_unknown_token_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="atk_nope"):
        await store.admin_tokens.revoke("atk_nope", now=1.0)


async def test_touch_records_the_latest_use(store: Store) -> None:
    token = await _add(store)
    await store.admin_tokens.touch(token.id, now=150.0)
    await store.admin_tokens.touch(token.id, now=140.0)  # a late write of an earlier use
    found = await store.admin_tokens.find_by_hash(HASH)
    assert found is not None
    assert found.last_used_at == 150.0
    await store.admin_tokens.touch("atk_nope", now=1.0)  # unknown ids are ignored


async def test_tokens_are_listed_in_the_order_they_were_added(store: Store) -> None:
    first = await _add(store, "sha256:a", "first")
    second = await _add(store, "sha256:b", "second")
    assert await store.admin_tokens.list() == [first, second]
