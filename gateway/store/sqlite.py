"""The SQLite database behind the seam: one aiosqlite connection, pragmas, serialised writes.

This is the only module that imports a database driver; the repositories see the
:class:`~gateway.store.database.Database` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Self, TypeVar

import aiosqlite

from gateway.errors import ConflictError, StoreBusyError, StoreError
from gateway.store.database import NO_PARAMS, Params, Row
from gateway.store.migrations import MIGRATIONS, Migration, migrate

T = TypeVar("T")

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
        return StoreBusyError(
            f"{doing}: the database stayed locked by another connection{waited}; "
            "is a second gateway process writing to the same file?"
        )
    return StoreError(f"{doing}: {exc}")


def split_statements(sql: str) -> list[str]:
    """Cut a script into single statements (sqlite3 runs one per call inside a transaction)."""
    statements: list[str] = []
    pending = ""
    for piece in sql.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            statement = pending.strip()
            if statement.strip(";").strip():
                statements.append(statement)
            pending = ""
    if pending.strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of the script: {pending.strip()!r}")
    return statements


def _mappings(cursor: aiosqlite.Cursor, rows: Iterable[Iterable[Any]]) -> list[Row]:
    """Rows as plain dicts from column name to value."""
    names = [column[0] for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in rows]


class SqliteTransaction:
    """The statements of one open transaction on the shared connection."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._open = True

    def _end(self) -> None:
        self._open = False

    def _ensure_open(self) -> None:
        if not self._open:
            raise StoreError("this transaction has ended; open a new one")

    async def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        self._ensure_open()

        async def run(conn: aiosqlite.Connection) -> int:
            async with conn.execute(sql, dict(params)) as cursor:
                return cursor.rowcount

        return await self._db._run(run, "cannot write to the database")

    async def execute_many(self, sql: str, params: Iterable[Params]) -> None:
        self._ensure_open()

        async def run(conn: aiosqlite.Connection) -> None:
            await conn.executemany(sql, (dict(p) for p in params))

        await self._db._run(run, "cannot write to the database")

    async def execute_script(self, sql: str) -> None:
        for statement in split_statements(sql):
            await self.execute(statement)

    async def fetch_one(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        self._ensure_open()
        return await self._db._fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        self._ensure_open()
        return await self._db._fetch_all(sql, params)


class SqliteDatabase:
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
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout_ms: int = 5000,
        migrations: tuple[Migration, ...] = MIGRATIONS,
    ) -> Self:
        """Open (creating if need be) the database file, set its pragmas and migrate it."""
        db = await cls.connect(path, busy_timeout_ms=busy_timeout_ms)
        try:
            await migrate(db, migrations=migrations)
        except BaseException:
            await db.close()
            raise
        return db

    @classmethod
    async def connect(cls, path: str | Path, *, busy_timeout_ms: int = 5000) -> Self:
        """Open (creating if need be) the database file and set its pragmas; no migrations."""
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
            await conn.set_trace_callback(db._count_statement)
            await db._set_pragmas(memory=memory)
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
            raise self._translate(exc, f"cannot configure the database at {self._path}") from exc
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
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """One write transaction: BEGIN IMMEDIATE, then COMMIT, or ROLLBACK on any exception.

        Transactions do not nest.
        """
        self._ensure_open()
        if self._held_by_me():
            raise StoreError("transactions do not nest: this task is already inside one")
        async with self._lock:
            self._ensure_open()
            self._owner = asyncio.current_task()
            try:
                await self._begin()
                tx = SqliteTransaction(self)
                try:
                    yield tx
                except BaseException:
                    tx._end()
                    await self._rollback_quietly()
                    raise
                tx._end()
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

    async def _run(self, job: Callable[[aiosqlite.Connection], Awaitable[T]], doing: str) -> T:
        """Run one statement's job on the connection, in the gateway's error family."""
        try:
            return await job(self._conn)
        except sqlite3.Error as exc:
            raise self._translate(exc, doing) from exc
        except ValueError as exc:  # aiosqlite lost its connection
            raise StoreError(f"{doing}: {exc}") from exc

    async def _fetch_one(self, sql: str, params: Params) -> Row | None:
        async def run(conn: aiosqlite.Connection) -> Row | None:
            async with conn.execute(sql, dict(params)) as cursor:
                row = await cursor.fetchone()
                return None if row is None else _mappings(cursor, [row])[0]

        return await self._run(run, "cannot read from the database")

    async def _fetch_all(self, sql: str, params: Params) -> list[Row]:
        async def run(conn: aiosqlite.Connection) -> list[Row]:
            async with conn.execute(sql, dict(params)) as cursor:
                return _mappings(cursor, await cursor.fetchall())

        return await self._run(run, "cannot read from the database")

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[None]:
        self._ensure_open()
        if self._held_by_me():
            yield
            return
        async with self._lock:
            self._ensure_open()
            yield

    async def fetch_one(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        """Read one row (or None) from committed data."""
        async with self._reading():
            return await self._fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        """Read every row from committed data."""
        async with self._reading():
            return await self._fetch_all(sql, params)

    async def check(self) -> None:
        """A cheap health query; raises StoreError if the database cannot answer."""
        try:
            row = await self.fetch_one("SELECT 1 AS one FROM schema_migrations LIMIT 1")
        except StoreError as exc:
            raise StoreError(f"the database at {self._path} is unusable: {exc}") from exc
        if row is None:
            raise StoreError(f"the database at {self._path} has no schema")

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        row = await self.fetch_one(
            "SELECT coalesce(max(version), 0) AS version FROM schema_migrations"
        )
        return int(row["version"]) if row is not None else 0

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SqliteDatabase {self._path} {state}>"
