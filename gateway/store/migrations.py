"""The schema's history: versioned migrations and the code that brings a database up to date."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from gateway.errors import StoreError
from gateway.store.database import Database, Transaction


class Migration(NamedTuple):
    """One step of the schema: applied once, in order, inside its own transaction.

    A released migration is never edited: a database that has applied it would not notice.
    Versions 1-3 were written for SQLite alone; from 4 on, queries rely only on portable
    columns (``users.email_key`` instead of ``COLLATE NOCASE``, ``seq`` instead of ``rowid``).
    """

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
    # Rows written under versions 1-3 (only ever by SQLite) keep their order: rowid is it.
    Migration(
        4,
        "portable twins: a lower-cased email key and an insertion order",
        """
        ALTER TABLE users ADD COLUMN email_key TEXT;
        UPDATE users SET email_key = lower(email);
        CREATE UNIQUE INDEX users_email_key ON users(email_key);
        ALTER TABLE users ADD COLUMN seq INTEGER;
        UPDATE users SET seq = rowid;
        CREATE INDEX users_seq ON users(seq);
        ALTER TABLE organisations ADD COLUMN seq INTEGER;
        UPDATE organisations SET seq = rowid;
        CREATE INDEX organisations_seq ON organisations(seq);
        ALTER TABLE tenants ADD COLUMN seq INTEGER;
        UPDATE tenants SET seq = rowid;
        CREATE INDEX tenants_seq ON tenants(seq);
        ALTER TABLE admin_tokens ADD COLUMN seq INTEGER;
        UPDATE admin_tokens SET seq = rowid;
        CREATE INDEX admin_tokens_seq ON admin_tokens(seq);
        """,
    ),
    Migration(
        5,
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
    Migration(
        6,
        "one-time codes sent by SMS and email: keyed hashes, sealed destinations, single use",
        """
        CREATE TABLE one_time_codes (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            purpose TEXT NOT NULL,
            channel TEXT NOT NULL CHECK (channel IN ('sms', 'email')),
            destination TEXT NOT NULL,
            digest TEXT NOT NULL,
            issued_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL
        );
        CREATE UNIQUE INDEX one_time_codes_user_purpose ON one_time_codes(user_id, purpose);
        CREATE INDEX one_time_codes_expires_at ON one_time_codes(expires_at);
        """,
    ),
    Migration(
        7,
        "second factors: enrolled factors, recovery codes, remembered devices, enrolments",
        """
        CREATE TABLE mfa_factors (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            kind TEXT NOT NULL CHECK (kind IN ('totp', 'sms', 'email')),
            role TEXT NOT NULL CHECK (role IN ('primary', 'backup')),
            secret TEXT NOT NULL,
            last_step INTEGER,
            created_at REAL NOT NULL,
            UNIQUE (user_id, role)
        );
        CREATE TABLE mfa_recovery_codes (
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            digest TEXT NOT NULL,
            created_at REAL NOT NULL,
            used_at REAL,
            PRIMARY KEY (user_id, digest)
        );
        CREATE TABLE mfa_devices (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            last_used_at REAL,
            label TEXT NOT NULL
        );
        CREATE INDEX mfa_devices_user_id ON mfa_devices(user_id);
        CREATE INDEX mfa_devices_expires_at ON mfa_devices(expires_at);
        CREATE TABLE mfa_enrolments (
            user_id TEXT PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
            started_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            totp_secret TEXT,
            totp_step INTEGER
        );
        """,
    ),
    Migration(
        8,
        "enrolments hold a verified backup method until they finish",
        """
        ALTER TABLE mfa_enrolments ADD COLUMN backup_kind TEXT
            CHECK (backup_kind IN ('sms', 'email'));
        ALTER TABLE mfa_enrolments ADD COLUMN backup_secret TEXT;
        """,
    ),
    Migration(
        9,
        "Xero grants (one consent's sealed token set), their connections, and service keys",
        """
        CREATE TABLE xero_grants (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL REFERENCES organisations(id),
            auth_event_id TEXT,
            connected_by TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL
                CHECK (status IN ('active', 'needs_reconnect', 'disconnected')),
            status_changed_at REAL NOT NULL,
            version INTEGER NOT NULL,
            access_token TEXT NOT NULL,
            refresh_token TEXT NOT NULL,
            access_expires_at REAL NOT NULL,
            scopes TEXT NOT NULL,
            refresh_token_issued_at REAL NOT NULL,
            last_refresh_at REAL,
            verified_use_at REAL,
            lease_owner TEXT,
            lease_until REAL
        );
        CREATE INDEX xero_grants_org_id ON xero_grants(org_id);
        CREATE TABLE xero_connections (
            id TEXT PRIMARY KEY,
            grant_id TEXT NOT NULL REFERENCES xero_grants(id),
            org_id TEXT NOT NULL REFERENCES organisations(id),
            tenant_id TEXT NOT NULL,
            tenant_type TEXT NOT NULL,
            tenant_name TEXT NOT NULL,
            created_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN
                ('active', 'needs_reconnect', 'disconnected', 'removed_at_xero')),
            status_changed_at REAL NOT NULL
        );
        CREATE INDEX xero_connections_grant_id ON xero_connections(grant_id);
        CREATE INDEX xero_connections_org_tenant ON xero_connections(org_id, tenant_id);
        CREATE TABLE service_keys (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL REFERENCES organisations(id),
            name TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            created_by TEXT NOT NULL,
            revoked_at REAL,
            last_used_at REAL
        );
        CREATE INDEX service_keys_org_id ON service_keys(org_id);
        """,
    ),
    Migration(
        10,
        "Xero webhook events awaiting forwarding; single-use states of the Xero connect flow",
        """
        CREATE TABLE xero_webhook_events (
            id TEXT PRIMARY KEY,
            received_at REAL NOT NULL,
            tenant_id TEXT NOT NULL,
            tenant_type TEXT NOT NULL,
            event_category TEXT NOT NULL,
            event_type TEXT NOT NULL,
            resource_id TEXT NOT NULL,
            document TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            claim TEXT,
            claimed_until REAL,
            delivered_at REAL,
            abandoned_at REAL,
            last_error TEXT
        );
        CREATE INDEX xero_webhook_events_next_attempt_at
            ON xero_webhook_events(next_attempt_at);
        CREATE INDEX xero_webhook_events_received_at ON xero_webhook_events(received_at);
        CREATE TABLE xero_authorizations (
            state_hash TEXT PRIMARY KEY,
            session_hash TEXT NOT NULL,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            org_id TEXT NOT NULL,
            verifier TEXT NOT NULL,
            next_path TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL
        );
        CREATE INDEX xero_authorizations_expires_at ON xero_authorizations(expires_at);
        """,
    ),
    Migration(
        11,
        "enrolments may set up a phone (SMS) as the primary method",
        """
        ALTER TABLE mfa_enrolments ADD COLUMN primary_kind TEXT NOT NULL DEFAULT 'totp'
            CHECK (primary_kind IN ('totp', 'sms'));
        ALTER TABLE mfa_enrolments ADD COLUMN phone_secret TEXT;
        """,
    ),
    Migration(
        12,
        "sessions carry the hash of their gateway token (the app's bearer for the Xero listener)",
        """
        ALTER TABLE sessions ADD COLUMN gateway_token_hash TEXT;
        CREATE INDEX sessions_gateway_token_hash ON sessions(gateway_token_hash);
        """,
    ),
    Migration(
        13,
        "password reset links, stored by keyed hash",
        """
        CREATE TABLE password_resets (
            token_hash TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            created_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            used_at REAL,
            retired_at REAL
        );
        CREATE INDEX password_resets_user_id ON password_resets(user_id);
        CREATE INDEX password_resets_expires_at ON password_resets(expires_at);
        """,
    ),
    Migration(
        14,
        "an index to find an organisation's events of one kind (its members' last sign-ins)",
        """
        CREATE INDEX audit_events_org_kind ON audit_events(org_id, kind, at);
        """,
    ),
    Migration(
        15,
        "gateway admin accounts (password and TOTP, apart from app users) and their sessions",
        """
        CREATE TABLE admins (
            id TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            email_key TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            password_hash TEXT NOT NULL,
            totp_secret TEXT NOT NULL,
            totp_last_step INTEGER,
            created_at REAL NOT NULL,
            disabled_at REAL
        );
        CREATE TABLE admin_sessions (
            id_hash TEXT PRIMARY KEY,
            admin_id TEXT NOT NULL REFERENCES admins(id),
            created_at REAL NOT NULL,
            last_seen_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            csrf_secret TEXT NOT NULL,
            client_addr TEXT,
            ended_at REAL
        );
        CREATE INDEX admin_sessions_admin_id ON admin_sessions(admin_id);
        """,
    ),
    Migration(
        16,
        "reminder claims: each reminder email and weekly summary claimed once before it is sent",
        """
        CREATE TABLE reminder_claims (
            kind TEXT NOT NULL CHECK (kind IN ('reminder', 'summary')),
            recipient_id TEXT NOT NULL,
            policy_id TEXT NOT NULL,
            point TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('sending', 'sent', 'failed', 'abandoned')),
            attempts INTEGER NOT NULL,
            claimed_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            retry_at REAL,
            PRIMARY KEY (kind, recipient_id, policy_id, point)
        );
        CREATE INDEX reminder_claims_updated_at ON reminder_claims(updated_at);
        """,
    ),
    Migration(
        17,
        "recent sign-ins: when, from where, which browser and which second factor, per user",
        """
        CREATE TABLE sign_ins (
            id TEXT PRIMARY KEY,
            user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            at REAL NOT NULL,
            client_addr TEXT,
            user_agent TEXT NOT NULL,
            method TEXT CHECK (method IN ('totp', 'sms', 'email', 'recovery', 'device')),
            session_hash TEXT
        );
        CREATE INDEX sign_ins_user_seq ON sign_ins(user_id, seq);
        CREATE INDEX sign_ins_at ON sign_ins(at);
        CREATE INDEX sign_ins_session_hash ON sign_ins(session_hash);
        """,
    ),
    Migration(
        18,
        "audit trail by subject and by actor: the console's filters and a user's last sign-in",
        """
        CREATE INDEX audit_events_subject ON audit_events(subject, kind, at);
        CREATE INDEX audit_events_actor ON audit_events(actor);
        """,
    ),
    Migration(
        20,
        "Xero rate budgets: each tenant's budget as a Xero listener last counted it",
        """
        CREATE TABLE xero_rate_budgets (
            tenant_id TEXT PRIMARY KEY,
            words TEXT NOT NULL,
            counted_at REAL NOT NULL
        );
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


async def applied_versions(tx: Transaction) -> set[int]:
    """The versions recorded in the ledger (which must exist)."""
    rows = await tx.fetch_all("SELECT version FROM schema_migrations")
    return {int(row["version"]) for row in rows}


async def migrate(
    db: Database,
    *,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    now: Callable[[], float] = time.time,
) -> list[int]:
    """Apply the migrations the database lacks, each in its own transaction; return them.

    A database that has a version this code does not know is refused, since it was written
    by newer code.
    """
    try:
        async with db.transaction() as tx:
            await tx.execute(_CREATE_LEDGER)
            have = await applied_versions(tx)
    except StoreError as exc:
        raise type(exc)(f"cannot read the schema version of the database: {exc}") from exc
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
        if await _apply(db, migration, now()):
            applied.append(migration.version)
    return applied


async def _apply(db: Database, migration: Migration, applied_at: float) -> bool:
    """Apply one migration unless another process got there first; True if this call did."""
    label = f"migration {migration.version} ({migration.description})"
    try:
        async with db.transaction() as tx:
            # Re-read inside the write transaction: another process may have applied it.
            if migration.version in await applied_versions(tx):
                return False
            await tx.execute_script(migration.sql)
            await tx.execute(
                "INSERT INTO schema_migrations (version, description, applied_at)"
                " VALUES (:version, :description, :applied_at)",
                {
                    "version": migration.version,
                    "description": migration.description,
                    "applied_at": applied_at,
                },
            )
    except (StoreError, ValueError) as exc:
        error = type(exc) if isinstance(exc, StoreError) else StoreError
        raise error(f"{label} failed and was rolled back: {exc}") from exc
    return True
