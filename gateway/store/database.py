"""The one SQLite connection: pragmas, migrations, serialised transactions, reads and health."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.errors import ConflictError, StoreError
from gateway.store.migrations import migrate

Params = Sequence[Any] | Mapping[str, Any]

_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_UNIQUE_CODES = frozenset({"SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"})


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether SQLite gave up waiting for another connection's lock."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and (code & 0xFF) in _BUSY_CODES


def is_unique_violation(exc: sqlite3.Error) -> bool:
    """Whether an insert or update collided with a UNIQUE or PRIMARY KEY constraint."""
    return getattr(exc, "sqlite_errorname", None) in _UNIQUE_CODES


def translate(exc: sqlite3.Error, doing: str, *, busy_timeout_ms: int | None = None) -> StoreError:
    """Turn a sqlite3 exception into the gateway's error family, saying what was being done."""
    if isinstance(exc, sqlite3.IntegrityError) and is_unique_violation(exc):
        return ConflictError(f"{doing}: a record with the same identity already exists ({exc})")
    if is_busy(exc):
        waited = f" for {busy_timeout_ms} ms" if busy_timeout_ms is not None else ""
        return StoreError(
            f"{doing}: the database stayed locked by another connection{waited}; "
            "is a second gateway process writing to the same file?"
        )
    return StoreError(f"{doing}: {exc}")


async def execute(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> int:
    """Run one statement inside a transaction and return the number of rows it changed."""
    async with conn.execute(sql, params) as cursor:
        return cursor.rowcount


async def execute_insert(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> int:
    """Run one INSERT inside a transaction and return the new row's rowid."""
    async with conn.execute(sql, params) as cursor:
        rowid = cursor.lastrowid
    if rowid is None:  # pragma: no cover - sqlite3 always sets it after an INSERT
        raise StoreError(f"no row id after {sql!r}")
    return rowid


async def query_one(
    conn: aiosqlite.Connection, sql: str, params: Params = ()
) -> sqlite3.Row | None:
    """Read one row inside a transaction."""
    async with conn.execute(sql, params) as cursor:
        return await cursor.fetchone()


async def query_all(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[sqlite3.Row]:
    """Read all rows inside a transaction."""
    return list(await conn.execute_fetchall(sql, params))


class Database:
    """One aiosqlite connection shared by the whole process, used one job at a time.

    Writes go through :meth:`transaction`, which holds an asyncio lock from BEGIN IMMEDIATE to
    COMMIT. Reads (:meth:`fetch_one`, :meth:`fetch_all`) take the same lock, so they never see
    another coroutine's uncommitted work on this shared connection; a read made by the task
    that holds the transaction runs inside it instead of waiting for itself.
    """

    def __init__(self, conn: aiosqlite.Connection, *, path: Path, busy_timeout_ms: int) -> None:
        self._conn = conn
        self._path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._statements = 0
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> Database:
        """Open (creating if need be) the database file, set its pragmas and migrate it."""
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, not {busy_timeout_ms}")
        memory = str(path) == ":memory:"
        path = Path(path)
        try:
            if not memory:
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(
                path, isolation_level=None, timeout=busy_timeout_ms / 1000
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the database at {path}: {exc}") from exc
        db = cls(conn, path=path, busy_timeout_ms=busy_timeout_ms)
        try:
            conn.row_factory = sqlite3.Row
            await conn.set_trace_callback(db._count_statement)
            await db._set_pragmas(memory=memory)
            await migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return db

    async def _set_pragmas(self, *, memory: bool) -> None:
        conn = self._conn
        try:
            await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
            await conn.execute("PRAGMA foreign_keys = ON")
            async with conn.execute("PRAGMA journal_mode = WAL") as cursor:
                row = await cursor.fetchone()
            await conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise translate(
                exc,
                f"cannot configure the database at {self._path}",
                busy_timeout_ms=self._busy_timeout_ms,
            ) from exc
        mode = str(row[0]).lower() if row is not None else "?"
        if mode != "wal" and not memory:
            raise StoreError(
                f"the database at {self._path} refused write-ahead logging (journal_mode={mode}); "
                "put it on a local filesystem"
            )

    def _count_statement(self, _sql: str) -> None:
        # Runs on aiosqlite's worker thread, the only thread that touches the connection.
        self._statements += 1

    @property
    def path(self) -> Path:
        """Where the database file lives."""
        return self._path

    @property
    def statement_count(self) -> int:
        """How many SQL statements this connection has run since it was opened."""
        return self._statements

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Wait for the current job to finish, then close the connection. Safe to repeat."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            await self._conn.close()

    def _ensure_open(self) -> None:
        if self._closed:
            raise StoreError(f"the database at {self._path} is closed")

    def _held_by_me(self) -> bool:
        return self._owner is not None and self._owner is asyncio.current_task()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any exception.

        sqlite3 exceptions escaping the block become :class:`StoreError` (unique violations
        become :class:`ConflictError`). Transactions do not nest.
        """
        self._ensure_open()
        if self._held_by_me():
            raise StoreError("transactions do not nest: this task is already inside one")
        async with self._lock:
            self._ensure_open()
            self._owner = asyncio.current_task()
            try:
                await self._begin()
                try:
                    yield self._conn
                except BaseException as exc:
                    await self._rollback_quietly()
                    if isinstance(exc, sqlite3.Error):
                        raise self._translate(exc, "the transaction was rolled back") from exc
                    raise
                try:
                    await self._conn.execute("COMMIT")
                except BaseException as exc:
                    await self._rollback_quietly()
                    if isinstance(exc, sqlite3.Error):
                        raise self._translate(exc, "cannot commit the transaction") from exc
                    raise
            finally:
                self._owner = None

    async def _begin(self) -> None:
        for attempt in range(2):
            try:
                await self._conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.Error as exc:
                # A COMMIT whose caller was cancelled can fail after the lock was released,
                # leaving a dead transaction open; this BEGIN ran after it, so it is safe to
                # roll it back (nothing in it was ever reported committed) and try again.
                if attempt == 0 and self._conn.in_transaction and not is_busy(exc):
                    await self._rollback_quietly()
                    continue
                raise self._translate(exc, "cannot start a write transaction") from exc
            except BaseException:
                # Cancelled while BEGIN was queued: it will still run, so undo it after.
                await self._rollback_quietly()
                raise

    async def _rollback_quietly(self) -> None:
        # Fails harmlessly if no transaction is open (BEGIN failed, or SQLite rolled back).
        with contextlib.suppress(sqlite3.Error):
            await self._conn.execute("ROLLBACK")

    def _translate(self, exc: sqlite3.Error, doing: str) -> StoreError:
        return translate(exc, doing, busy_timeout_ms=self._busy_timeout_ms)

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        self._ensure_open()
        if self._held_by_me():
            yield self._conn
            return
        async with self._lock:
            self._ensure_open()
            yield self._conn

    async def fetch_one(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        """Read one row (or None) from committed data."""
        async with self._reading() as conn:
            try:
                return await query_one(conn, sql, params)
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read from the database") from exc

    async def fetch_all(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Read every row from committed data."""
        async with self._reading() as conn:
            try:
                return await query_all(conn, sql, params)
            except sqlite3.Error as exc:
                raise self._translate(exc, "cannot read from the database") from exc

    async def check(self) -> None:
        """A cheap health query; raises StoreError if the database cannot answer."""
        try:
            row = await self.fetch_one("SELECT 1 FROM schema_migrations LIMIT 1")
        except (StoreError, ValueError) as exc:  # ValueError: aiosqlite lost its connection
            raise StoreError(f"the database at {self._path} is unusable: {exc}") from exc
        if row is None:
            raise StoreError(f"the database at {self._path} has no schema")

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        row = await self.fetch_one("SELECT coalesce(max(version), 0) FROM schema_migrations")
        return int(row[0]) if row is not None else 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Database {self._path} {state}>"
