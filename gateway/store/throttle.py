"""Throttle counters: failed attempts per key, changed by compare-and-swap writes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.errors import StoreBusyError
from gateway.store.database import Database, Row
from gateway.store.records import ThrottleState

_SELECT = "SELECT failures, window_started_at, locked_until FROM throttle WHERE key = :key"
# Each write names the state it was computed from, so it changes nothing if another
# connection wrote the key in between (then the update is worked out again).
_INSERT = (
    "INSERT INTO throttle (key, failures, window_started_at, locked_until)"
    " VALUES (:key, :failures, :window_started_at, :locked_until)"
    " ON CONFLICT (key) DO NOTHING"
)
_REPLACE = (
    "UPDATE throttle SET failures = :failures, window_started_at = :window_started_at,"
    " locked_until = :locked_until WHERE key = :key AND failures = :old_failures"
    " AND window_started_at = :old_window_started_at AND locked_until = :old_locked_until"
)
_DELETE = (
    "DELETE FROM throttle WHERE key = :key AND failures = :old_failures"
    " AND window_started_at = :old_window_started_at AND locked_until = :old_locked_until"
)
# Every lost race means another writer's change went in; this many in a row is a stampede.
_ATTEMPTS = 100


def _state(row: Row) -> ThrottleState:
    return ThrottleState(
        failures=row["failures"],
        window_started_at=row["window_started_at"],
        locked_until=row["locked_until"],
    )


def _fields(state: ThrottleState, prefix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}failures": state.failures,
        f"{prefix}window_started_at": state.window_started_at,
        f"{prefix}locked_until": state.locked_until,
    }


def _write(
    key: str, old: ThrottleState | None, new: ThrottleState | None
) -> tuple[str, dict[str, Any]] | None:
    """The one conditional statement that moves the key from ``old`` to ``new`` (if any)."""
    if old is None:
        return None if new is None else (_INSERT, {"key": key, **_fields(new)})
    expected = {"key": key, **_fields(old, "old_")}
    if new is None:
        return _DELETE, expected
    return _REPLACE, {**expected, **_fields(new)}


class ThrottleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> ThrottleState | None:
        row = await self._db.fetch_one(_SELECT, {"key": key})
        return _state(row) if row is not None else None

    async def update(
        self, key: str, fn: Callable[[ThrottleState | None], ThrottleState | None]
    ) -> ThrottleState | None:
        """Replace the state with ``fn(current)`` and return it.

        ``fn`` must be quick and must not touch the store; if it returns None the row is
        deleted, and if it raises nothing changes. The write only lands if the state is
        still the one ``fn`` saw; if another connection changed it first, ``fn`` is called
        again on the new state, so no concurrent update is ever lost.
        """
        for _ in range(_ATTEMPTS):
            async with self._db.transaction() as tx:
                row = await tx.fetch_one(_SELECT, {"key": key})
                old = _state(row) if row is not None else None
                new = fn(old)
                write = _write(key, old, new)
                if write is None or await tx.execute(*write) == 1:
                    return new
        raise StoreBusyError(
            f"the throttle counter {key!r} changed under every one of {_ATTEMPTS} attempts "
            "to update it; try again"
        )

    async def clear(self, key: str) -> None:
        """Forget a key's failures."""
        async with self._db.transaction() as tx:
            await tx.execute("DELETE FROM throttle WHERE key = :key", {"key": key})

    async def purge(self, *, prefix: str, now: float, window: float) -> int:
        """Delete the counters whose key starts with ``prefix``, whose lock is over and whose
        window ended before ``now - window``. Each kind of counter has its own window, so
        each is purged by its own prefix; a kind never named here is never purged."""
        if not prefix:
            raise ValueError("purge needs the prefix of one kind of counter")
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM throttle WHERE substr(key, 1, :length) = :prefix"
                " AND locked_until <= :now AND window_started_at < :cutoff",
                {"length": len(prefix), "prefix": prefix, "now": now, "cutoff": now - window},
            )
