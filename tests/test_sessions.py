"""When a session is over: a pure judgement over its record, last use and the limits."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.errors import NotFoundError, StoreError
from gateway.signin.sessions import SessionLimits, SessionManager, end_reason, hash_session_id
from gateway.store import Store
from gateway.store.records import SecondFactor, SessionRecord, User

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


async def one_process(tmp_path: Path) -> tuple[Store, SessionManager, ManualClock, User]:
    store = await Store.open(tmp_path / "s.sqlite3")
    clock = ManualClock(1000.0)
    return store, SessionManager(store, LIMITS, clock), clock, await add_user(store)


async def test_a_verified_session_survives_a_restart(tmp_path: Path) -> None:
    store, manager, clock, user = await one_process(tmp_path)
    raw, live = await manager.create(user, client_addr=None)
    clock.advance(30)
    await manager.dismiss_prompt(live, "mfa-prompt", limit=None)
    new_raw, verified = await manager.mark_verified(live, "totp", clock() - 1)
    assert verified.mfa_verified
    assert verified.prompt_dismissed
    await store.close()

    store = await Store.open(tmp_path / "s.sqlite3")  # the process starts again
    manager = SessionManager(store, LIMITS, clock)
    assert await manager.lookup(raw) is None
    loaded = await manager.lookup(new_raw)
    assert loaded is not None
    assert loaded.second_factor == SecondFactor(method="totp", at=1029.0)
    assert loaded.mfa_verified
    assert loaded.prompt_dismissed
    await store.close()


async def test_a_second_factor_check_rotates_the_session_id_as_sign_in_does(
    tmp_path: Path,
) -> None:
    store, manager, clock, user = await one_process(tmp_path)
    raw, live = await manager.create(user, client_addr="192.0.2.1")
    assert not live.mfa_verified
    assert live.second_factor is None
    clock.advance(600)
    new_raw, verified = await manager.mark_verified(live, "sms", clock())
    assert new_raw != raw
    assert verified.id_hash == hash_session_id(new_raw) != live.id_hash
    assert verified.record.csrf_secret != live.record.csrf_secret
    # The absolute lifetime still counts from the sign-in: a check does not extend it.
    assert verified.record.created_at == 1000.0
    assert verified.record.expires_at == live.record.expires_at
    assert manager.warm(live.id_hash) is None
    assert await manager.lookup(raw) is None
    old = await store.sessions.get(live.id_hash)
    assert old is not None
    assert old.ended_at == clock()
    assert manager.warm(verified.id_hash) is verified
    with pytest.raises(ValueError, match="unknown second-factor method 'carrier-pigeon'"):
        await manager.mark_verified(verified, "carrier-pigeon", clock())
    await store.close()


async def test_a_session_over_or_ended_elsewhere_is_not_marked_verified(tmp_path: Path) -> None:
    first, second, a, _b, clock, user = await two_processes(tmp_path)
    _raw, live = await a.create(user, client_addr=None)
    await second.sessions.end(live.id_hash, clock())  # signed out through another process
    with pytest.raises(NotFoundError, match="sign in again"):
        await a.mark_verified(live, "totp", clock())
    assert a.warm(live.id_hash) is None
    _, idle = await a.create(user, client_addr=None)
    clock.advance(LIMITS.idle)
    with pytest.raises(NotFoundError, match="idle"):
        await a.mark_verified(idle, "totp", clock())
    count = await first.db.fetch_one("SELECT count(*) AS sessions FROM sessions")
    assert count is not None
    assert count["sessions"] == 2  # nothing was added
    await first.close()
    await second.close()


async def test_another_process_learns_a_verification_on_its_next_poll(tmp_path: Path) -> None:
    first, second, a, b, clock, user = await two_processes(tmp_path)
    await b.follow_changes()
    raw, live = await a.create(user, client_addr=None)
    assert await b.lookup(raw) is not None  # cached by the other process too
    new_raw, _ = await a.mark_verified(live, "recovery", clock())
    assert await b.follow_revocations() == 1  # one poll: the old id is dropped...
    assert await b.follow_changes() == {user.id}  # ...and the user's state is named
    assert await b.lookup(raw) is None
    loaded = await b.lookup(new_raw)
    assert loaded is not None
    assert loaded.second_factor == SecondFactor(method="recovery", at=clock())
    await first.close()
    await second.close()


async def test_another_process_learns_a_dismissal_on_its_next_poll(tmp_path: Path) -> None:
    first, second, a, b, clock, user = await two_processes(tmp_path)
    assert await b.follow_changes() == set()  # notes where the feed stands
    raw, live = await a.create(user, client_addr=None)
    cached = await b.lookup(raw)
    assert cached is not None
    assert (cached.prompt_dismissed, live.prompt_dismissed) == (False, False)
    clock.advance(5)
    assert await a.dismiss_prompt(live, "mfa-prompt", limit=3) == 1
    assert live.prompt_dismissed  # at once in the process that recorded it
    assert await b.follow_changes() == {user.id}
    assert cached.prompt_dismissed  # the cached session itself, refreshed in place
    assert cached.record.prompt_dismissed_at == clock()
    assert await b.lookup(raw) is cached
    assert await b.follow_changes() == set()  # nothing new
    await first.close()
    await second.close()


async def test_a_session_dismissed_while_it_is_being_loaded_is_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, a, b, _clock, user = await two_processes(tmp_path)
    await b.follow_changes()
    raw, live = await a.create(user, client_addr=None)
    read_user = second.users.get

    async def user_read_while_another_process_dismisses(user_id: str) -> User:
        found = await read_user(user_id)
        await a.dismiss_prompt(live, "mfa-prompt", limit=None)  # lands between b's reads
        await b.follow_changes()  # and b's poll sees it before the load is cached
        return found

    monkeypatch.setattr(second.users, "get", user_read_while_another_process_dismisses)
    loaded = await b.lookup(raw)
    assert loaded is not None
    assert loaded.prompt_dismissed
    await first.close()
    await second.close()
