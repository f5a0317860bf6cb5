"""The schema's history: versioned migrations and the code that brings a database up to date."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import NamedTuple

import aiosqlite

from gateway.errors import StoreError


class Migration(NamedTuple):
    """One step of the schema: applied once, in order, inside its own transaction."""

    version: int
    description: str
    sql: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "organisations, users, sessions, audit events and throttle",
        """
        CREATE TABLE organisations (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL
        );
        CREATE TABLE users (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL REFERENCES organisations(id),
            email TEXT NOT NULL UNIQUE COLLATE NOCASE,
            display_name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('principal', 'member')),
            password_hash TEXT NOT NULL,
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL
        );
        CREATE INDEX users_org_id ON users(org_id);
        CREATE TABLE sessions (
            id_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            csrf_secret TEXT NOT NULL,
            client_addr TEXT,
            ended_at REAL
        );
        CREATE INDEX sessions_user_id ON sessions(user_id);
        CREATE TABLE audit_events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            kind TEXT NOT NULL,
            actor TEXT,
            subject TEXT,
            org_id TEXT,
            client_addr TEXT,
            detail TEXT NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_events_at ON audit_events(at);
        CREATE INDEX audit_events_kind ON audit_events(kind);
        CREATE TABLE throttle (
            key TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            window_started_at REAL NOT NULL,
            locked_until REAL NOT NULL DEFAULT 0
        );
        """,
    ),
    Migration(
        2,
        "policies with history, tenants, dismissals and admin tokens",
        """
        CREATE TABLE policies (
            id TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            enabled INTEGER NOT NULL,
            document TEXT NOT NULL,
            updated_at REAL NOT NULL,
            updated_by TEXT NOT NULL
        );
        CREATE TABLE policy_versions (
            policy_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            change TEXT NOT NULL
                CHECK (change IN ('create', 'replace', 'enable', 'disable', 'delete')),
            document TEXT NOT NULL,
            enabled INTEGER NOT NULL,
            at REAL NOT NULL,
            by TEXT NOT NULL,
            PRIMARY KEY (policy_id, version)
        );
        CREATE TABLE policy_set (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO policy_set (id, version) VALUES (1, 0);
        CREATE TABLE tenants (
            org_id TEXT NOT NULL REFERENCES organisations(id),
            tenant_id TEXT NOT NULL,
            name TEXT NOT NULL,
            country_code TEXT NOT NULL,
            active INTEGER NOT NULL,
            linked_at REAL NOT NULL,
            checked_at REAL NOT NULL,
            source TEXT NOT NULL CHECK (source IN ('manual', 'xero')),
            PRIMARY KEY (org_id, tenant_id)
        );
        CREATE TABLE facts_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version INTEGER NOT NULL
        );
        INSERT INTO facts_version (id, version) VALUES (1, 0);
        CREATE TABLE dismissals (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            policy_key TEXT NOT NULL,
            count INTEGER NOT NULL,
            last_at REAL NOT NULL,
            PRIMARY KEY (user_id, policy_key)
        );
        CREATE TABLE admin_tokens (
            id TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            scopes TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at REAL,
            last_used_at REAL
        );
        """,
    ),
    Migration(
        3,
        "a feed of ended sessions and disabled users, for every process's caches",
        """
        CREATE TABLE revocations (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at REAL NOT NULL,
            session_hash TEXT,
            user_id TEXT,
            CHECK (session_hash IS NOT NULL OR user_id IS NOT NULL)
        );
        """,
    ),
    Migration(
        4,
        "second-factor state and prompt dismissal per session; a feed of user-state changes",
        """
        ALTER TABLE sessions ADD COLUMN mfa_method TEXT
            CHECK (mfa_method IN ('totp', 'sms', 'email', 'recovery', 'device'));
        ALTER TABLE sessions ADD COLUMN mfa_at REAL;
        ALTER TABLE sessions ADD COLUMN prompt_dismissed_at REAL;
        CREATE TABLE user_changes (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('mfa', 'dismissal', 'enrolment')),
            user_id TEXT NOT NULL,
            session_hash TEXT
        );
        CREATE INDEX user_changes_at ON user_changes(at);
        """,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version

_CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT,
    applied_at REAL
)
"""


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


async def applied_versions(conn: aiosqlite.Connection) -> set[int]:
    """The versions recorded in the ledger (which must exist)."""
    rows = await conn.execute_fetchall("SELECT version FROM schema_migrations")
    return {int(row[0]) for row in rows}


async def migrate(
    conn: aiosqlite.Connection,
    *,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    now: Callable[[], float] = time.time,
) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction; return them.

    ``conn`` must be in autocommit mode (``isolation_level=None``). A database that has a
    version this code does not know is refused, since it was written by newer code.
    """
    try:
        await conn.execute(_CREATE_LEDGER)
        have = await applied_versions(conn)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the schema version of the database: {exc}") from exc
    known = {m.version for m in migrations}
    unknown = sorted(have - known)
    if unknown:
        raise StoreError(
            f"the database has schema version {unknown[-1]}, newer than this gateway knows "
            f"(up to {max(known, default=0)}); run a newer gateway or use another database file"
        )
    applied: list[int] = []
    for migration in sorted(migrations, key=lambda m: m.version):
        if migration.version in have:
            continue
        if await _apply(conn, migration, now()):
            applied.append(migration.version)
    return applied


async def _apply(conn: aiosqlite.Connection, migration: Migration, applied_at: float) -> bool:
    """Apply one migration unless another process got there first; True if this call did."""
    label = f"migration {migration.version} ({migration.description})"
    try:
        await conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot start {label}: {exc}") from exc
    try:
        # Re-read under the write lock: a second process may have applied it meanwhile.
        if migration.version in await applied_versions(conn):
            await conn.execute("ROLLBACK")
            return False
        for statement in split_statements(migration.sql):
            await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
            (migration.version, migration.description, applied_at),
        )
        await conn.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back on its own
            await conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error | ValueError):
            raise StoreError(f"{label} failed and was rolled back: {exc}") from exc
        raise
    return True
