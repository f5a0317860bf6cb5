"""Tests for the session repository."""

from __future__ import annotations

import dataclasses

import pytest

from gateway.errors import ConflictError, NotFoundError
from gateway.store import SessionRecord, Store, User
from gateway.store.records import SecondFactor


@pytest.fixture
async def user(store: Store) -> User:
    org = await store.organisations.add(name="Acme", now=0.0)
    return await store.users.add(
        org_id=org.id,
        email="alice@example.com",
        display_name="Alice",
        role="member",
        password_hash="h",
        now=0.0,
    )


async def _colleague(store: Store, user: User) -> User:
    """Another user of ``user``'s organisation."""
    return await store.users.add(
        org_id=user.org_id,
        email="bob@example.com",
        display_name="Bob",
        role="member",
        password_hash="h",
        now=0.0,
    )


def _session(user: User, id_hash: str, *, at: float = 100.0, ttl: float = 3600.0) -> SessionRecord:
    return SessionRecord(
        id_hash=id_hash,
        user_id=user.id,
        created_at=at,
        last_seen_at=at,
        expires_at=at + ttl,
        csrf_secret=f"csrf-{id_hash}",
        client_addr="203.0.113.7",
        ended_at=None,
    )


async def test_an_added_session_can_be_read_back(store: Store, user: User) -> None:
    record = _session(user, "hash-1")
    await store.sessions.add(record)
    assert await store.sessions.get("hash-1") == record


async def test_a_session_without_client_address_is_stored(store: Store, user: User) -> None:
    record = dataclasses.replace(_session(user, "hash-1"), client_addr=None)
    await store.sessions.add(record)
    assert await store.sessions.get("hash-1") == record


async def test_an_unknown_session_is_none(store: Store) -> None:
    assert await store.sessions.get("nope") is None


async def test_a_session_for_an_unknown_user_is_rejected(store: Store, user: User) -> None:
    ghost = dataclasses.replace(user, id="usr_ghost")
    with pytest.raises(NotFoundError, match="usr_ghost"):
        await store.sessions.add(_session(ghost, "hash-1"))


async def test_a_reused_session_id_is_rejected(store: Store, user: User) -> None:
    await store.sessions.add(_session(user, "hash-1"))
    with pytest.raises(ConflictError):
        await store.sessions.add(_session(user, "hash-1", at=200.0))


async def test_touch_many_records_last_seen_times_in_one_go(store: Store, user: User) -> None:
    for n in range(3):
        await store.sessions.add(_session(user, f"hash-{n}"))
    await store.sessions.touch_many({"hash-0": 150.0, "hash-2": 170.0, "unknown": 999.0})
    seen = [(await store.sessions.get(f"hash-{n}")) for n in range(3)]
    assert [record.last_seen_at if record else None for record in seen] == [150.0, 100.0, 170.0]


async def test_touch_many_never_moves_last_seen_backwards(store: Store, user: User) -> None:
    await store.sessions.add(_session(user, "hash-1"))
    await store.sessions.touch_many({"hash-1": 300.0})
    await store.sessions.touch_many({"hash-1": 200.0})
    record = await store.sessions.get("hash-1")
    assert record is not None
    assert record.last_seen_at == 300.0


async def test_touch_many_leaves_ended_sessions_alone(store: Store, user: User) -> None:
    await store.sessions.add(_session(user, "hash-1"))
    await store.sessions.end("hash-1", now=120.0)
    await store.sessions.touch_many({"hash-1": 300.0})
    record = await store.sessions.get("hash-1")
    assert record is not None
    assert record.last_seen_at == 100.0


async def test_touching_nothing_runs_no_sql(store: Store) -> None:
    before = store.db.statement_count
    await store.sessions.touch_many({})
    assert store.db.statement_count == before


async def test_ending_a_session_marks_it_once(store: Store, user: User) -> None:
    await store.sessions.add(_session(user, "hash-1"))
    assert await store.sessions.end("hash-1", now=500.0) is True
    assert await store.sessions.end("hash-1", now=600.0) is False
    record = await store.sessions.get("hash-1")
    assert record is not None
    assert record.ended_at == 500.0


async def test_ending_an_unknown_session_reports_false(store: Store) -> None:
    assert await store.sessions.end("nope", now=1.0) is False


async def test_ending_all_of_a_users_sessions_returns_those_that_were_open(
    store: Store, user: User
) -> None:
    other = await _colleague(store, user)
    await store.sessions.add(_session(user, "a-1", at=100.0))
    await store.sessions.add(_session(user, "a-2", at=110.0))
    await store.sessions.add(_session(user, "a-3", at=120.0))
    await store.sessions.add(_session(other, "b-1"))
    await store.sessions.end("a-2", now=130.0)

    assert await store.sessions.end_all_for_user(user.id, now=200.0) == ["a-1", "a-3"]
    assert await store.sessions.end_all_for_user(user.id, now=300.0) == []
    ended = [await store.sessions.get(h) for h in ("a-1", "a-2", "a-3", "b-1")]
    assert [record.ended_at if record else "gone" for record in ended] == [
        200.0,
        130.0,
        200.0,
        None,
    ]


async def test_purge_deletes_only_sessions_ended_or_expired_long_enough_ago(
    store: Store, user: User
) -> None:
    await store.sessions.add(_session(user, "active", at=1000.0, ttl=3600.0))
    await store.sessions.add(_session(user, "ended-long-ago", at=100.0, ttl=1e6))
    await store.sessions.end("ended-long-ago", now=200.0)
    await store.sessions.add(_session(user, "ended-recently", at=100.0, ttl=1e6))
    await store.sessions.end("ended-recently", now=1500.0)
    await store.sessions.add(_session(user, "expired-long-ago", at=0.0, ttl=100.0))
    await store.sessions.add(_session(user, "expired-recently", at=0.0, ttl=1500.0))

    assert await store.sessions.purge(now=2000.0, keep_seconds=1000.0) == 2
    kept = {
        h for h in ("active", "ended-recently", "expired-recently") if await store.sessions.get(h)
    }
    assert kept == {"active", "ended-recently", "expired-recently"}
    assert await store.sessions.get("ended-long-ago") is None
    assert await store.sessions.get("expired-long-ago") is None


async def test_active_sessions_are_counted_excluding_ended_and_expired(
    store: Store, user: User
) -> None:
    assert await store.sessions.count_active(now=0.0) == 0
    await store.sessions.add(_session(user, "live-1", at=100.0, ttl=1000.0))
    await store.sessions.add(_session(user, "live-2", at=100.0, ttl=1000.0))
    await store.sessions.add(_session(user, "ended", at=100.0, ttl=1000.0))
    await store.sessions.add(_session(user, "expired", at=100.0, ttl=10.0))
    await store.sessions.end("ended", now=150.0)
    assert await store.sessions.count_active(now=200.0) == 2
    assert await store.sessions.count_active(now=1100.0) == 0


async def test_a_users_sessions_go_when_the_user_goes(store: Store, user: User) -> None:
    await store.sessions.add(_session(user, "hash-1"))
    async with store.db.transaction() as tx:
        await tx.execute("DELETE FROM users WHERE id = :id", {"id": user.id})
    assert await store.sessions.get("hash-1") is None


async def test_change_marks_move_with_policies_tenants_revocations_and_user_changes(
    store: Store,
) -> None:
    assert await store.change_marks() == (0, 0, 0, 0)
    org = await store.organisations.add(name="Org", now=1.0)
    await store.tenants.link(org_id=org.id, tenant_id="t", name="T", country_code="AU", now=1.0)
    user = await store.users.add(
        org_id=org.id,
        email="a@b.example",
        display_name="A",
        role="member",
        password_hash="x",
        now=1.0,
    )
    await store.users.set_disabled(user.id, True, now=2.0)
    marks = await store.change_marks()
    assert (marks.policies, marks.facts, marks.user_changes) == (0, 1, 0)
    assert marks.revocations == await store.revocations.latest() > 0
    await store.dismissals.record(user.id, "mfa-prompt", 3.0, limit=None)
    assert (await store.change_marks()).user_changes == await store.changes.latest() > 0
    before = store.db.statement_count
    await store.change_marks()
    assert store.db.statement_count == before + 1


async def test_a_session_rotated_for_a_second_factor_check_carries_it(
    store: Store, user: User
) -> None:
    old = _session(user, "hash-1")
    await store.sessions.add(old)
    revoked, changed = await store.revocations.latest(), await store.changes.latest()
    new = dataclasses.replace(
        old,
        id_hash="hash-2",
        csrf_secret="csrf-2",
        last_seen_at=200.0,
        second_factor=SecondFactor(method="device", at=199.0),
        prompt_dismissed_at=150.0,
    )
    await store.sessions.rotate_verified("hash-1", new, 200.0)
    assert await store.sessions.get("hash-2") == new
    ended = await store.sessions.get("hash-1")
    assert ended is not None
    assert ended.ended_at == 200.0
    assert [h for _, h, _ in await store.revocations.since(revoked)] == ["hash-1"]
    assert [(c.kind, c.user_id, c.session_hash) for c in await store.changes.since(changed)] == [
        ("mfa", user.id, "hash-2")
    ]


@pytest.mark.parametrize("how", ["ended", "expired", "another user's"])
async def test_only_an_open_session_of_the_same_user_is_rotated(
    store: Store, user: User, how: str
) -> None:
    old = _session(user, "hash-1", ttl=1000.0)
    await store.sessions.add(old)
    new = dataclasses.replace(
        old, id_hash="hash-2", second_factor=SecondFactor(method="totp", at=200.0)
    )
    now = 200.0
    if how == "ended":
        await store.sessions.end("hash-1", 150.0)
    elif how == "expired":
        now = old.expires_at
    else:
        other = await _colleague(store, user)
        new = dataclasses.replace(new, user_id=other.id)
    changed = await store.changes.latest()
    with pytest.raises(NotFoundError, match="sign in again"):
        await store.sessions.rotate_verified("hash-1", new, now)
    assert await store.sessions.get("hash-2") is None
    assert await store.changes.since(changed) == []


async def test_a_rotation_must_record_the_check_and_methods_are_known(
    store: Store, user: User
) -> None:
    old = _session(user, "hash-1")
    await store.sessions.add(old)
    with pytest.raises(ValueError, match="must record the check"):
        await store.sessions.rotate_verified("hash-1", dataclasses.replace(old, id_hash="h2"), 1)
    with pytest.raises(ValueError, match="unknown second-factor method 'voice'"):
        SecondFactor(method="voice", at=1.0)


async def test_the_user_state_feed_is_purged_but_keeps_its_newest_entry(
    store: Store, user: User
) -> None:
    for at in (1.0, 2.0, 3.0):
        await store.dismissals.record(user.id, "mfa-prompt", at, limit=None)
    newest = await store.changes.latest()
    assert await store.changes.purge(before=100.0) == 2
    # Ids keep rising after a purge, so a follower that saw the newest misses nothing.
    assert [c.id for c in await store.changes.since(0)] == [newest]
    await store.dismissals.record(user.id, "mfa-prompt", 4.0, limit=None)
    assert await store.changes.latest() > newest
