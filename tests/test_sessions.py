"""When a session is over: a pure judgement over its record, last use and the limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import StoreError
from gateway.signin.sessions import SessionLimits, SessionManager, end_reason, hash_session_id
from gateway.store import Store
from gateway.store.records import SessionRecord, User

LIMITS = SessionLimits(idle=1800.0, absolute=43200.0)


def record(ended_at: float | None = None) -> SessionRecord:
    return SessionRecord(
        id_hash="h",
        user_id="u",
        created_at=0.0,
        last_seen_at=0.0,
        expires_at=43200.0,
        csrf_secret="c",
        client_addr=None,
        ended_at=ended_at,
    )


@pytest.mark.parametrize(
    ("ended_at", "last_seen", "now", "reason"),
    [
        (None, 0.0, 0.0, None),
        (None, 0.0, 1799.0, None),
        (None, 0.0, 1800.0, "idle"),
        (None, 43000.0, 43199.0, None),
        (None, 43000.0, 43200.0, "expired"),
        (5.0, 0.0, 6.0, "ended"),
    ],
)
def test_end_reason(
    ended_at: float | None, last_seen: float, now: float, reason: str | None
) -> None:
    assert end_reason(record(ended_at), last_seen, LIMITS, now) == reason


def test_session_hash_is_stable_and_not_the_id() -> None:
    assert hash_session_id("abc") == hash_session_id("abc")
    assert hash_session_id("abc") != "abc"
    assert len(hash_session_id("abc")) == 64


async def add_user(store: Store, email: str = "a@b.example") -> User:
    org = await store.organisations.find_by_name("Org") or await store.organisations.add(
        name="Org", now=1000.0
    )
    return await store.users.add(
        org_id=org.id,
        email=email,
        display_name=email,
        role="member",
        password_hash="x",
        now=1000.0,
    )


async def test_failed_flush_keeps_last_use_for_the_next_one(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    clock = ManualClock(1000.0)
    manager = SessionManager(store, LIMITS, clock)
    raw, live = await manager.create(await add_user(store), client_addr=None)
    clock.advance(60)
    assert await manager.lookup(raw) is not None
    await store.close()
    with pytest.raises(StoreError):
        await manager.flush()
    store = await Store.open(tmp_path / "s.sqlite3")
    manager._store = store  # the same manager, its store back
    await manager.flush()
    record = await store.sessions.get(live.id_hash)
    assert record is not None
    assert record.last_seen_at == 1060.0
    await store.close()


async def test_sessions_over_for_a_week_are_purged(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    clock = ManualClock(1000.0)
    manager = SessionManager(store, LIMITS, clock)
    user = await add_user(store)
    _, old = await manager.create(user, client_addr=None)
    await manager.end(old.id_hash)
    clock.advance(8 * 86400)
    _, fresh = await manager.create(user, client_addr=None)
    assert await manager.purge(7 * 86400) == 1
    assert await store.sessions.get(old.id_hash) is None
    assert await store.sessions.get(fresh.id_hash) is not None
    await store.close()


async def test_sessions_ended_by_another_process_are_dropped_from_the_cache(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sqlite3"
    store = await Store.open(path)
    clock = ManualClock(1000.0)
    manager = SessionManager(store, LIMITS, clock)
    users = [await add_user(store, f"{n}@b.example") for n in ("a", "b", "c")]
    raws = [(await manager.create(user, client_addr=None))[0] for user in users]
    assert await manager.follow_revocations() == 0  # notes where the feed stands
    other = await Store.open(path)  # another gateway process, or the CLI
    ended = await other.sessions.get(hash_session_id(raws[0]))
    assert ended is not None
    await other.sessions.end(ended.id_hash, clock())
    await other.users.set_disabled(users[1].id, True, now=clock())
    await other.close()
    assert all([await manager.lookup(raw) for raw in raws])  # still cached
    assert await manager.follow_revocations() == 2
    assert await manager.lookup(raws[0]) is None
    assert await manager.lookup(raws[1]) is None
    assert await manager.lookup(raws[2]) is not None
    await store.close()


async def two_processes(
    tmp_path: Path,
) -> tuple[Store, Store, SessionManager, SessionManager, ManualClock, User]:
    path = tmp_path / "s.sqlite3"
    first, second = await Store.open(path), await Store.open(path)
    clock = ManualClock(1000.0)
    user = await add_user(first)
    a, b = SessionManager(first, LIMITS, clock), SessionManager(second, LIMITS, clock)
    await a.follow_revocations()
    await b.follow_revocations()
    return first, second, a, b, clock, user


async def test_a_process_with_an_old_copy_does_not_end_a_session_in_use_elsewhere(
    tmp_path: Path,
) -> None:
    first, second, a, b, clock, user = await two_processes(tmp_path)
    raw, _ = await a.create(user, client_addr=None)
    assert await b.lookup(raw) is not None  # b caches it at t0, then serves nothing more
    for _ in range(4):  # a serves it for 40 minutes, writing its last use behind
        clock.advance(600)
        assert await a.lookup(raw) is not None
        await a.flush()
    assert await b.lookup(raw) is not None
    await a.follow_revocations()
    assert await a.lookup(raw) is not None
    await first.close()
    await second.close()


async def test_a_session_ended_while_it_is_being_loaded_is_not_cached_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, a, b, clock, user = await two_processes(tmp_path)
    raw, live = await a.create(user, client_addr=None)
    read_user = second.users.get

    async def user_read_while_another_process_signs_out(user_id: str) -> User:
        found = await read_user(user_id)
        await first.sessions.end(live.id_hash, clock())  # lands between b's two reads
        return found

    monkeypatch.setattr(second.users, "get", user_read_while_another_process_signs_out)
    assert await b.lookup(raw) is None
    monkeypatch.undo()
    assert await b.lookup(raw) is None
    await first.close()
    await second.close()


async def test_the_warm_path_answers_only_for_a_cached_session_that_is_plainly_on(
    tmp_path: Path,
) -> None:
    store = await Store.open(tmp_path / "s.sqlite3")
    clock = ManualClock(1000.0)
    manager = SessionManager(store, LIMITS, clock)
    raw, live = await manager.create(await add_user(store), client_addr=None)
    assert manager.warm(hash_session_id("not a session")) is None

    clock.advance(60)
    assert manager.warm(live.id_hash) is live
    assert live.last_seen == clock()  # touched as used now
    await manager.flush()
    stored = await store.sessions.get(live.id_hash)
    assert stored is not None
    assert stored.last_seen_at == clock()

    # Idle too long: the warm path does not judge; the full lookup ends the session.
    clock.advance(LIMITS.idle)
    assert manager.warm(live.id_hash) is None
    assert await manager.lookup(raw) is None
    ended = await store.sessions.get(live.id_hash)
    assert ended is not None
    assert ended.ended_at == clock()
    assert manager.warm(live.id_hash) is None

    # Not cached in this process (a restart, another worker): loaded by the full lookup,
    # after which the warm path serves it.
    raw2, live2 = await manager.create(await add_user(store, "b@b.example"), client_addr=None)
    fresh = SessionManager(store, LIMITS, clock)
    assert fresh.warm(live2.id_hash) is None
    loaded = await fresh.lookup(raw2)
    assert loaded is not None
    assert fresh.warm(live2.id_hash) is loaded
    await store.close()
