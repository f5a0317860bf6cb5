"""Throttle counters: failed attempts per key, changed by atomic read-modify-write."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from gateway.store.database import Database, execute, query_one
from gateway.store.records import ThrottleState

_SELECT = "SELECT failures, window_started_at, locked_until FROM throttle WHERE key = ?"


def _state(row: sqlite3.Row) -> ThrottleState:
    return ThrottleState(
        failures=row["failures"],
        window_started_at=row["window_started_at"],
        locked_until=row["locked_until"],
    )


class ThrottleRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, key: str) -> ThrottleState | None:
        row = await self._db.fetch_one(_SELECT, (key,))
        return _state(row) if row is not None else None

    async def update(
        self, key: str, fn: Callable[[ThrottleState | None], ThrottleState | None]
    ) -> ThrottleState | None:
        """Replace the state with ``fn(current)`` in one write transaction and return it.

        ``fn`` must be quick and must not touch the store; if it returns None the row is
        deleted, and if it raises nothing changes.
        """
        async with self._db.transaction() as conn:
            row = await query_one(conn, _SELECT, (key,))
            new = fn(_state(row) if row is not None else None)
            if new is None:
                if row is not None:
                    await execute(conn, "DELETE FROM throttle WHERE key = ?", (key,))
            else:
                await execute(
                    conn,
                    "INSERT INTO throttle (key, failures, window_started_at, locked_until)"
                    " VALUES (?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET"
                    " failures = excluded.failures,"
                    " window_started_at = excluded.window_started_at,"
                    " locked_until = excluded.locked_until",
                    (key, new.failures, new.window_started_at, new.locked_until),
                )
        return new

    async def clear(self, key: str) -> None:
        """Forget a key's failures."""
        async with self._db.transaction() as conn:
            await execute(conn, "DELETE FROM throttle WHERE key = ?", (key,))

    async def purge(self, *, now: float, window: float) -> int:
        """Delete counters whose lock is over and whose window ended before ``now - window``."""
        async with self._db.transaction() as conn:
            cursor = await conn.execute(
                "DELETE FROM throttle WHERE locked_until <= ? AND window_started_at < ?",
                (now, now - window),
            )
            return cursor.rowcount
