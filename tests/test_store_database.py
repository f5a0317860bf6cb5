"""Tests for the SQLite database behind the seam: pragmas, migrations, transactions, health."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.errors import ConflictError, StoreBusyError, StoreError
from gateway.store import (
    LATEST_VERSION,
    MIGRATIONS,
    Migration,
    SqliteDatabase,
    Transaction,
    migrate,
)
from gateway.store.sqlite import split_statements


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[SqliteDatabase]:
    database = await SqliteDatabase.open(tmp_path / "gateway.sqlite3")
    yield database
    await database.close()


async def _insert_org(tx: Transaction, org_id: str, name: str) -> None:
    await tx.execute(
        "INSERT INTO organisations (id, name, created_at) VALUES (:id, :name, 0)",
        {"id": org_id, "name": name},
    )


async def _org_count(db: SqliteDatabase) -> int:
    row = await db.fetch_one("SELECT count(*) AS n FROM organisations")
    assert row is not None
    return int(row["n"])


# --- opening and pragmas ---------------------------------------------------------------------


async def test_open_creates_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "gateway.sqlite3"
    database = await SqliteDatabase.open(path)
    try:
        assert path.exists()
        assert database.path == path
    finally:
        await database.close()


async def test_durability_and_integrity_pragmas_are_in_force(db: SqliteDatabase) -> None:
    async def pragma(name: str) -> object:
        row = await db.fetch_one(f"PRAGMA {name}")
        assert row is not None
        (value,) = row.values()
        return value

    assert await pragma("journal_mode") == "wal"
    assert await pragma("synchronous") == 2  # FULL
    assert await pragma("foreign_keys") == 1
    assert await pragma("busy_timeout") == 5000


async def test_an_in_memory_database_works_for_throwaway_use() -> None:
    database = await SqliteDatabase.open(":memory:")
    try:
        assert await database.schema_version() == LATEST_VERSION
        async with database.transaction() as tx:
            await _insert_org(tx, "org_1", "One")
        assert await _org_count(database) == 1
    finally:
        await database.close()


async def test_busy_timeout_is_configurable(tmp_path: Path) -> None:
    database = await SqliteDatabase.open(tmp_path / "g.sqlite3", busy_timeout_ms=1234)
    try:
        row = await database.fetch_one("PRAGMA busy_timeout")
        assert row is not None
        assert row["timeout"] == 1234
    finally:
        await database.close()


async def test_negative_busy_timeout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        await SqliteDatabase.open(tmp_path / "g.sqlite3", busy_timeout_ms=-1)


async def test_an_unopenable_path_raises_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open"):
        await SqliteDatabase.open(blocker / "gateway.sqlite3")


async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "garbage.sqlite3"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        await SqliteDatabase.open(path)


# --- migrations ------------------------------------------------------------------------------


async def test_a_new_database_is_migrated_to_the_latest_version_and_it_is_recorded(
    db: SqliteDatabase,
) -> None:
    assert await db.schema_version() == LATEST_VERSION
    rows = await db.fetch_all(
        "SELECT version, description, applied_at FROM schema_migrations ORDER BY version"
    )
    assert [row["version"] for row in rows] == [m.version for m in MIGRATIONS]
    assert [row["description"] for row in rows] == [m.description for m in MIGRATIONS]
    assert all(row["applied_at"] > 0 for row in rows)
    tables = {
        row["name"]
        for row in await db.fetch_all("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert {"organisations", "users", "sessions", "audit_events", "throttle"} <= tables
    indexes = {
        row["name"]
        for row in await db.fetch_all("SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {"sessions_user_id", "audit_events_at", "audit_events_kind"} <= indexes


async def test_migrations_are_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    first = await SqliteDatabase.open(path)
    await first.close()
    second = await SqliteDatabase.open(path)
    try:
        rows = await second.fetch_all("SELECT version FROM schema_migrations")
        assert len(rows) == len(MIGRATIONS)
        assert await second.schema_version() == LATEST_VERSION
    finally:
        await second.close()


async def test_migrate_applies_only_what_is_missing_and_reports_it(tmp_path: Path) -> None:
    db = await SqliteDatabase.connect(tmp_path / "g.sqlite3")
    try:
        extra = Migration(LATEST_VERSION + 1, "notes", "CREATE TABLE notes (body TEXT)")
        assert await migrate(db) == [m.version for m in MIGRATIONS]
        assert await migrate(db) == []
        assert await migrate(db, migrations=(*MIGRATIONS, extra)) == [extra.version]
        assert await migrate(db, migrations=(*MIGRATIONS, extra)) == []
    finally:
        await db.close()


async def test_a_database_from_the_future_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gateway.sqlite3"
    database = await SqliteDatabase.open(path)
    async with database.transaction() as tx:
        await tx.execute(
            "INSERT INTO schema_migrations (version, description, applied_at)"
            " VALUES (:version, 'from a newer gateway', 0)",
            {"version": LATEST_VERSION + 1},
        )
    await database.close()
    with pytest.raises(StoreError, match="newer than this gateway knows"):
        await SqliteDatabase.open(path)


async def test_a_failing_migration_is_rolled_back_entirely(tmp_path: Path) -> None:
    broken = Migration(
        LATEST_VERSION + 1,
        "half good",
        "CREATE TABLE good (x INTEGER); INSERT INTO no_such_table VALUES (1);",
    )
    db = await SqliteDatabase.connect(tmp_path / "g.sqlite3")
    try:
        with pytest.raises(StoreError, match="half good"):
            await migrate(db, migrations=(*MIGRATIONS, broken))
        tables = {row["name"] for row in await db.fetch_all("SELECT name FROM sqlite_master")}
        assert "good" not in tables
        assert "organisations" in tables  # the earlier migration stands
        versions = {
            row["version"] for row in await db.fetch_all("SELECT version FROM schema_migrations")
        }
        assert versions == {m.version for m in MIGRATIONS}
    finally:
        await db.close()


def test_migration_versions_are_unique_and_ascending() -> None:
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions))
    assert versions[0] == 1


def test_scripts_are_split_into_single_statements_respecting_quotes() -> None:
    script = "CREATE TABLE a (x TEXT DEFAULT ';');\n  INSERT INTO a VALUES ('x;y') ;\n"
    assert split_statements(script) == [
        "CREATE TABLE a (x TEXT DEFAULT ';');",
        "INSERT INTO a VALUES ('x;y') ;",
    ]
    with pytest.raises(ValueError, match="incomplete"):
        split_statements("SELECT 'unterminated")


# --- transactions ----------------------------------------------------------------------------


async def test_a_transaction_commits_when_its_block_succeeds(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
    assert await _org_count(db) == 1


async def test_a_transaction_rolls_back_when_its_block_raises(db: SqliteDatabase) -> None:
    async def insert_then_fail() -> None:
        async with db.transaction() as tx:
            await _insert_org(tx, "org_1", "One")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await insert_then_fail()
    assert await _org_count(db) == 0


async def test_a_unique_violation_escaping_a_transaction_becomes_a_conflict(
    db: SqliteDatabase,
) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")

    async def insert_two() -> None:
        async with db.transaction() as tx:
            await _insert_org(tx, "org_2", "Two")
            await _insert_org(tx, "org_3", "One")

    with pytest.raises(ConflictError) as caught:
        await insert_two()
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
    assert await _org_count(db) == 1


async def test_other_sqlite_errors_escaping_a_transaction_become_store_errors(
    db: SqliteDatabase,
) -> None:
    with pytest.raises(StoreError, match="no such table") as caught:
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO no_such_table VALUES (1)")
    assert not isinstance(caught.value, ConflictError)


async def test_foreign_keys_are_enforced(db: SqliteDatabase) -> None:
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO users (id, org_id, email, display_name, role, password_hash,"
                " created_at) VALUES ('usr_1', 'org_missing', 'a@b.c', 'A', 'member', 'h', 0)"
            )


async def test_transactions_do_not_nest(db: SqliteDatabase) -> None:
    async with db.transaction():
        with pytest.raises(StoreError, match="do not nest"):
            async with db.transaction():
                pass  # pragma: no cover


async def test_concurrent_transactions_are_serialised(db: SqliteDatabase) -> None:
    inside = 0
    most_inside = 0

    async def job(n: int) -> None:
        nonlocal inside, most_inside
        async with db.transaction() as tx:
            inside += 1
            most_inside = max(most_inside, inside)
            await _insert_org(tx, f"org_{n}", f"Org {n}")
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(job(n) for n in range(20)))
    assert most_inside == 1
    assert await _org_count(db) == 20


async def test_reads_never_see_another_coroutines_uncommitted_writes(db: SqliteDatabase) -> None:
    written = asyncio.Event()
    release = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await _insert_org(tx, "org_1", "One")
            written.set()
            await release.wait()
            raise RuntimeError("changed my mind")

    writing = asyncio.create_task(writer())
    await written.wait()
    reading = asyncio.create_task(_org_count(db))
    await asyncio.sleep(0.05)
    assert not reading.done(), "the read should wait for the open transaction"
    release.set()
    with pytest.raises(RuntimeError):
        await writing
    assert await reading == 0


async def test_the_transaction_holder_can_read_its_own_writes(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
        assert await _org_count(db) == 1


async def test_a_cancelled_transaction_is_rolled_back_and_the_database_stays_usable(
    db: SqliteDatabase,
) -> None:
    written = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            await _insert_org(tx, "org_1", "One")
            written.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(writer())
    await written.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _org_count(db) == 0
    async with db.transaction() as tx:
        await _insert_org(tx, "org_2", "Two")
    assert await _org_count(db) == 1


async def test_a_transaction_cancelled_while_starting_leaves_nothing_open(
    db: SqliteDatabase,
) -> None:
    for _ in range(20):
        task = asyncio.create_task(_write_one(db))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    async with db.transaction() as tx:
        await _insert_org(tx, "org_last", "Last")
    row = await db.fetch_one("SELECT count(*) AS n FROM organisations WHERE id = 'org_last'")
    assert row is not None
    assert row["n"] == 1


async def _write_one(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_x", "X")
        await asyncio.Event().wait()


async def test_a_stale_open_transaction_is_rolled_back_before_the_next_one(
    db: SqliteDatabase,
) -> None:
    # What a COMMIT that failed after its caller was cancelled would leave behind.
    await db._conn.execute("BEGIN")
    await db._conn.execute(
        "INSERT INTO organisations (id, name, created_at) VALUES ('org_stale', 'Stale', 0)"
    )
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
    rows = await db.fetch_all("SELECT id FROM organisations")
    assert [row["id"] for row in rows] == ["org_1"]


async def test_a_write_lock_held_too_long_by_another_connection_raises_store_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gateway.sqlite3"
    holder = await SqliteDatabase.open(path)
    waiter = await SqliteDatabase.open(path, busy_timeout_ms=100)
    try:
        async with holder.transaction() as tx:
            await _insert_org(tx, "org_1", "One")
            with pytest.raises(StoreBusyError, match="locked by another connection for 100 ms"):
                async with waiter.transaction():
                    pass  # pragma: no cover
        # Once the lock is released the waiter works, and sees the committed row.
        async with waiter.transaction() as tx:
            await _insert_org(tx, "org_2", "Two")
        assert await _org_count(waiter) == 2
    finally:
        await waiter.close()
        await holder.close()


# --- the protocol: rows, named parameters, the error family -----------------------------------


async def test_rows_are_plain_dicts_by_column_name(db: SqliteDatabase) -> None:
    row = await db.fetch_one("SELECT 1 AS one, 'x' AS name")
    assert type(row) is dict
    assert row == {"one": 1, "name": "x"}
    assert await db.fetch_all("SELECT 1 AS n UNION SELECT 2 ORDER BY n") == [{"n": 1}, {"n": 2}]
    assert await db.fetch_one("SELECT 1 AS n WHERE 0 = 1") is None


async def test_named_parameters_bind_by_name_and_may_repeat(db: SqliteDatabase) -> None:
    row = await db.fetch_one("SELECT :a AS a, :b AS b, :a + :b AS total", {"b": 2, "a": 40})
    assert row == {"a": 40, "b": 2, "total": 42}


async def test_a_missing_named_parameter_is_a_store_error(db: SqliteDatabase) -> None:
    with pytest.raises(StoreError, match="missing"):
        await db.fetch_one("SELECT :missing AS m", {})


async def test_execute_returns_how_many_rows_changed(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await tx.execute_many(
            "INSERT INTO organisations (id, name, created_at) VALUES (:id, :id, 0)",
            [{"id": f"org_{n}"} for n in range(3)],
        )
        assert await tx.execute("UPDATE organisations SET created_at = 1") == 3
        assert await tx.execute("DELETE FROM organisations WHERE id = :id", {"id": "nope"}) == 0
    assert await _org_count(db) == 3


async def test_a_unique_violation_is_a_conflict_at_the_statement_and_the_rest_commits(
    db: SqliteDatabase,
) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
        with pytest.raises(ConflictError, match="same identity"):
            await _insert_org(tx, "org_1", "One again")
        await _insert_org(tx, "org_2", "Two")
    assert await _org_count(db) == 2


async def test_insert_returning_hands_back_the_new_row(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        first = await tx.fetch_one(
            "INSERT INTO revocations (at, user_id) VALUES (1, 'u') RETURNING id", {}
        )
        second = await tx.fetch_one(
            "INSERT INTO revocations (at, user_id) VALUES (2, 'u') RETURNING id", {}
        )
    assert first is not None
    assert second is not None
    assert second["id"] == first["id"] + 1


async def test_a_transaction_cannot_be_used_after_its_block(db: SqliteDatabase) -> None:
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
    with pytest.raises(StoreError, match="has ended"):
        await _insert_org(tx, "org_2", "Two")
    with pytest.raises(StoreError, match="has ended"):
        await tx.fetch_all("SELECT id FROM organisations")
    assert await _org_count(db) == 1


# --- statement counting, health, closing ------------------------------------------------------


async def test_statement_count_rises_with_each_query_and_not_otherwise(db: SqliteDatabase) -> None:
    before = db.statement_count
    await asyncio.sleep(0.01)
    assert db.statement_count == before
    await db.fetch_one("SELECT 1")
    assert db.statement_count == before + 1
    await db.fetch_all("SELECT 1 UNION SELECT 2")
    assert db.statement_count == before + 2
    async with db.transaction() as tx:
        await _insert_org(tx, "org_1", "One")
    assert db.statement_count == before + 5  # BEGIN, INSERT, COMMIT
    await db.check()
    assert db.statement_count == before + 6


async def test_check_passes_on_a_healthy_database(db: SqliteDatabase) -> None:
    await db.check()


async def test_check_fails_on_a_closed_database(db: SqliteDatabase) -> None:
    await db.close()
    with pytest.raises(StoreError, match="closed"):
        await db.check()


async def test_using_a_closed_database_raises_store_error(db: SqliteDatabase) -> None:
    await db.close()
    await db.close()  # closing twice is harmless
    assert db.closed
    with pytest.raises(StoreError, match="closed"):
        await db.fetch_all("SELECT 1")
    with pytest.raises(StoreError, match="closed"):
        async with db.transaction():
            pass  # pragma: no cover


async def test_close_waits_for_the_open_transaction_to_commit(
    db: SqliteDatabase, tmp_path: Path
) -> None:
    started = asyncio.Event()

    async def writer() -> None:
        async with db.transaction() as tx:
            started.set()
            await asyncio.sleep(0.05)
            await _insert_org(tx, "org_1", "One")

    task = asyncio.create_task(writer())
    await started.wait()
    await db.close()
    await task
    reopened = await SqliteDatabase.open(tmp_path / "gateway.sqlite3")
    try:
        assert await _org_count(reopened) == 1
    finally:
        await reopened.close()
