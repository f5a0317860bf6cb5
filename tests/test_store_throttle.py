"""Tests for the throttle repository, including atomic read-modify-write under concurrency."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gateway.errors import StoreBusyError
from gateway.store import SqliteDatabase, Store, ThrottleRepository, ThrottleState
from gateway.store.database import NO_PARAMS, Params, Row
from gateway.store.sqlite import SqliteTransaction


def _increment(state: ThrottleState | None) -> ThrottleState:
    if state is None:
        return ThrottleState(failures=1, window_started_at=100.0, locked_until=0.0)
    return ThrottleState(
        failures=state.failures + 1,
        window_started_at=state.window_started_at,
        locked_until=state.locked_until,
    )


async def test_an_unknown_key_has_no_state(store: Store) -> None:
    assert await store.throttle.get("user:alice") is None


async def test_update_creates_then_changes_the_state(store: Store) -> None:
    first = await store.throttle.update("user:alice", _increment)
    assert first == ThrottleState(failures=1, window_started_at=100.0, locked_until=0.0)
    locked = ThrottleState(failures=5, window_started_at=100.0, locked_until=900.0)
    assert await store.throttle.update("user:alice", lambda _: locked) == locked
    assert await store.throttle.get("user:alice") == locked


async def test_update_passes_the_current_state_to_the_function(store: Store) -> None:
    seen: list[ThrottleState | None] = []

    def spy(state: ThrottleState | None) -> ThrottleState:
        seen.append(state)
        return _increment(state)

    await store.throttle.update("k", spy)
    await store.throttle.update("k", spy)
    assert seen == [None, ThrottleState(failures=1, window_started_at=100.0, locked_until=0.0)]


async def test_update_returning_none_deletes_the_state(store: Store) -> None:
    await store.throttle.update("k", _increment)
    assert await store.throttle.update("k", lambda _: None) is None
    assert await store.throttle.get("k") is None
    assert await store.throttle.update("never-seen", lambda _: None) is None


async def test_an_update_function_that_raises_changes_nothing(store: Store) -> None:
    await store.throttle.update("k", _increment)

    def explode(_: ThrottleState | None) -> ThrottleState:
        raise RuntimeError("policy bug")

    with pytest.raises(RuntimeError, match="policy bug"):
        await store.throttle.update("k", explode)
    state = await store.throttle.get("k")
    assert state is not None
    assert state.failures == 1


async def test_keys_are_independent(store: Store) -> None:
    await store.throttle.update("a", _increment)
    await store.throttle.update("a", _increment)
    await store.throttle.update("b", _increment)
    a, b = await store.throttle.get("a"), await store.throttle.get("b")
    assert (a.failures if a else 0, b.failures if b else 0) == (2, 1)


async def test_clear_forgets_a_key(store: Store) -> None:
    await store.throttle.update("a", _increment)
    await store.throttle.update("b", _increment)
    await store.throttle.clear("a")
    await store.throttle.clear("never-seen")
    assert await store.throttle.get("a") is None
    assert await store.throttle.get("b") is not None


async def test_fifty_concurrent_increments_count_fifty(store: Store) -> None:
    results = await asyncio.gather(*(store.throttle.update("k", _increment) for _ in range(50)))
    state = await store.throttle.get("k")
    assert state is not None
    assert state.failures == 50
    assert sorted(r.failures for r in results if r) == list(range(1, 51))


async def test_concurrent_increments_through_two_connections_count_every_one(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.sqlite3"
    async with await Store.open(path) as first, await Store.open(path) as second:
        await asyncio.gather(
            *((first if n % 2 else second).throttle.update("shared", _increment) for n in range(50))
        )
        state = await first.throttle.get("shared")
    assert state is not None
    assert state.failures == 50


async def test_purge_drops_only_counters_of_its_kind_that_are_over(store: Store) -> None:
    old = ThrottleState(failures=2, window_started_at=0.0, locked_until=0.0)
    await store.throttle.update("a:old", lambda _: old)
    await store.throttle.update("b:old", lambda _: old)  # another kind, with its own window
    await store.throttle.update(
        "a:locked", lambda _: ThrottleState(failures=5, window_started_at=0.0, locked_until=5000.0)
    )
    await store.throttle.update(
        "a:recent", lambda _: ThrottleState(failures=1, window_started_at=950.0, locked_until=0.0)
    )
    assert await store.throttle.purge(prefix="a:", now=1000.0, window=900.0) == 1
    assert await store.throttle.get("a:old") is None
    assert await store.throttle.get("b:old") == old
    assert await store.throttle.get("a:locked") is not None
    assert await store.throttle.get("a:recent") is not None


async def test_purge_needs_a_kind(store: Store) -> None:
    with pytest.raises(ValueError, match="prefix"):
        await store.throttle.purge(prefix="", now=1000.0, window=900.0)


# --- compare-and-swap: a write computed from a state that is no longer there changes nothing ---


class _RacedTransaction(SqliteTransaction):
    def __init__(self, db: _RacedDatabase) -> None:
        super().__init__(db)
        self._raced = db

    async def fetch_one(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        row = await super().fetch_one(sql, params)
        if self._raced.sneaks:
            self._raced.sneaks -= 1
            await self.execute(self._raced.sneak)
        return row


class _RacedDatabase(SqliteDatabase):
    """A real database where another writer slips in between a transaction's read and its
    write, as it can under PostgreSQL's READ COMMITTED (SQLite's BEGIN IMMEDIATE never lets
    it): ``sneak`` runs right after each of the next ``sneaks`` reads."""

    sneak = ""
    sneaks = 0

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        async with super().transaction():
            yield _RacedTransaction(self)


@pytest.fixture
async def raced(tmp_path: Path) -> AsyncIterator[_RacedDatabase]:
    db = await _RacedDatabase.open(tmp_path / "raced.sqlite3")
    yield db
    await db.close()


def _state(failures: int) -> ThrottleState:
    return ThrottleState(failures=failures, window_started_at=100.0, locked_until=0.0)


def _clear(_: ThrottleState | None) -> None:
    return None


@pytest.mark.parametrize(
    ("before", "sneak", "fn", "seen", "after"),
    [
        (1, "UPDATE throttle SET failures = failures + 10", _increment, [1, 11], 12),
        (
            None,
            "INSERT INTO throttle (key, failures, window_started_at, locked_until)"
            " VALUES ('k', 5, 100.0, 0)",
            _increment,
            [None, 5],
            6,
        ),
        (3, "UPDATE throttle SET failures = 7", _clear, [3, 7], None),
    ],
    ids=["replace", "insert", "delete"],
)
async def test_an_update_that_lost_a_race_is_worked_out_again_on_the_winners_state(
    raced: _RacedDatabase,
    before: int | None,
    sneak: str,
    fn: Callable[[ThrottleState | None], ThrottleState | None],
    seen: list[int | None],
    after: int | None,
) -> None:
    throttle = ThrottleRepository(raced)
    if before is not None:
        await throttle.update("k", lambda _: _state(before))
    raced.sneak, raced.sneaks = sneak, 1
    calls: list[int | None] = []

    def spy(state: ThrottleState | None) -> ThrottleState | None:
        calls.append(state.failures if state else None)
        return fn(state)

    result = await throttle.update("k", spy)
    assert calls == seen
    stored = await throttle.get("k")
    assert (stored.failures if stored else None) == after
    assert result == stored


async def test_an_update_that_loses_every_race_gives_up_with_a_busy_error(
    raced: _RacedDatabase,
) -> None:
    throttle = ThrottleRepository(raced)
    await throttle.update("k", lambda _: _state(1))
    raced.sneak, raced.sneaks = "UPDATE throttle SET failures = failures + 1", 1000
    with pytest.raises(StoreBusyError, match="try again"):
        await throttle.update("k", _increment)
