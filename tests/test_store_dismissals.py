"""Tests for the dismissal repository, including the limit under concurrent calls."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.errors import ConflictError, NotFoundError
from gateway.store import DismissalLimitError, SessionRecord, Store, User


async def _user(store: Store, email: str = "ava@example.com") -> User:
    org = await store.organisations.find_by_name("Acme")
    if org is None:
        org = await store.organisations.add(name="Acme", now=1.0)
    return await store.users.add(
        org_id=org.id,
        email=email,
        display_name="Ava",
        role="member",
        password_hash="h",
        now=1.0,
    )


@pytest.fixture
async def user(store: Store) -> User:
    return await _user(store)


async def test_a_policy_never_dismissed_has_count_zero(store: Store, user: User) -> None:
    assert await store.dismissals.count(user.id, "mfa") == 0
    assert await store.dismissals.counts_for_user(user.id) == {}


async def test_record_counts_up_and_returns_the_new_count(store: Store, user: User) -> None:
    assert await store.dismissals.record(user.id, "mfa", 10.0, limit=None) == 1
    assert await store.dismissals.record(user.id, "mfa", 11.0, limit=None) == 2
    assert await store.dismissals.record(user.id, "xero-2fa", 12.0, limit=3) == 1
    assert await store.dismissals.count(user.id, "mfa") == 2
    assert await store.dismissals.counts_for_user(user.id) == {"mfa": 2, "xero-2fa": 1}
    row = await store.db.fetch_one(
        "SELECT last_at FROM dismissals WHERE user_id = :id AND policy_key = 'mfa'", {"id": user.id}
    )
    assert row is not None
    assert row["last_at"] == 11.0


async def test_record_at_the_limit_raises_and_changes_nothing(store: Store, user: User) -> None:
    for n in range(1, 3):
        assert await store.dismissals.record(user.id, "mfa", float(n), limit=2) == n
    with pytest.raises(DismissalLimitError, match="2 times"):
        await store.dismissals.record(user.id, "mfa", 99.0, limit=2)
    assert await store.dismissals.count(user.id, "mfa") == 2
    row = await store.db.fetch_one(
        "SELECT last_at FROM dismissals WHERE user_id = :id", {"id": user.id}
    )
    assert row is not None
    assert row["last_at"] == 2.0
    assert issubclass(DismissalLimitError, ConflictError)


async def test_a_limit_of_zero_allows_no_dismissal(store: Store, user: User) -> None:
    with pytest.raises(DismissalLimitError):
        await store.dismissals.record(user.id, "mfa", 1.0, limit=0)
    assert await store.dismissals.counts_for_user(user.id) == {}


async def test_a_negative_limit_is_refused(store: Store, user: User) -> None:
    with pytest.raises(ValueError, match="limit"):
        await store.dismissals.record(user.id, "mfa", 1.0, limit=-1)


async def test_recording_for_an_unknown_user_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError, match="usr_nope"):
        await store.dismissals.record("usr_nope", "mfa", 1.0, limit=None)


async def test_the_limit_holds_under_twenty_concurrent_calls(store: Store, user: User) -> None:
    results = await asyncio.gather(
        *(store.dismissals.record(user.id, "mfa", float(n), limit=5) for n in range(20)),
        return_exceptions=True,
    )
    counts = [r for r in results if isinstance(r, int)]
    assert sorted(counts) == [1, 2, 3, 4, 5]
    assert sum(isinstance(r, DismissalLimitError) for r in results) == 15
    assert await store.dismissals.count(user.id, "mfa") == 5


async def test_the_limit_holds_across_two_connections_to_one_file(
    tmp_path: Path, store: Store, user: User
) -> None:
    second = await Store.open(tmp_path / "gateway.sqlite3")
    try:
        results = await asyncio.gather(
            *(
                (store if n % 2 else second).dismissals.record(user.id, "mfa", 1.0, limit=5)
                for n in range(20)
            ),
            return_exceptions=True,
        )
        assert sorted(r for r in results if isinstance(r, int)) == [1, 2, 3, 4, 5]
        assert sum(isinstance(r, DismissalLimitError) for r in results) == 15
    finally:
        await second.close()


async def test_reset_forgets_only_that_users_dismissals(store: Store, user: User) -> None:
    other = await _user(store, "bob@example.com")
    await store.dismissals.record(user.id, "mfa", 1.0, limit=None)
    await store.dismissals.record(user.id, "xero-2fa", 1.0, limit=None)
    await store.dismissals.record(other.id, "mfa", 1.0, limit=None)
    seen = await store.changes.latest()
    await store.dismissals.reset(user.id, now=2.0)
    assert await store.dismissals.counts_for_user(user.id) == {}
    assert await store.dismissals.counts_for_user(other.id) == {"mfa": 1}
    # Every process learns that the user's counts moved.
    assert [(c.kind, c.user_id) for c in await store.changes.since(seen)] == [
        ("dismissal", user.id)
    ]
    assert await store.dismissals.record(user.id, "mfa", 2.0, limit=1) == 1


async def test_a_dismissal_marks_its_session_and_tells_every_process(
    store: Store, user: User
) -> None:
    record = SessionRecord(
        id_hash="hash-1",
        user_id=user.id,
        created_at=1.0,
        last_seen_at=1.0,
        expires_at=1000.0,
        csrf_secret="c",
        client_addr=None,
        ended_at=None,
    )
    await store.sessions.add(record)
    seen = await store.changes.latest()
    assert await store.dismissals.record(user.id, "mfa", 5.0, limit=1, session_hash="hash-1") == 1
    stored = await store.sessions.get("hash-1")
    assert stored is not None
    assert stored.prompt_dismissed_at == 5.0
    assert [(c.kind, c.user_id, c.session_hash) for c in await store.changes.since(seen)] == [
        ("dismissal", user.id, "hash-1")
    ]
    # At the limit nothing changes: no count, no mark, nothing in the feed.
    seen = await store.changes.latest()
    with pytest.raises(DismissalLimitError):
        await store.dismissals.record(user.id, "mfa", 6.0, limit=1, session_hash="hash-1")
    stored = await store.sessions.get("hash-1")
    assert stored is not None
    assert stored.prompt_dismissed_at == 5.0
    assert await store.changes.since(seen) == []
