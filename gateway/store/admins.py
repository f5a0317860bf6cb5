"""Gateway admin accounts and their sessions, kept apart from the app's users and sessions.

An admin signs in with a password and an authenticator app, always. The app's seed is
stored sealed (bound to the admin's id, registered for rotate-key); the last accepted TOTP
step only moves forward, so a code is accepted once even when two submissions race.
Admin sessions are stored by the hash of their id in a table of their own: a user's session
id never names one. Disabling an admin ends their sessions in the same transaction.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass

from gateway.errors import ConflictError, NotFoundError
from gateway.store.database import Database, Row
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_bytes, sealed_text
from gateway.store.users import email_key


def admin_totp_aad(admin_id: str) -> bytes:
    """What an admin's sealed authenticator seed is bound to: the admin's row."""
    return f"gateway-admin-totp\x00{admin_id}".encode()


TOTP_COLUMN = register_sealed_column(
    SealedColumn(
        table="admins",
        id_column="id",
        column="totp_secret",
        aad=lambda row: admin_totp_aad(row["id"]),
    )
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Admin:
    """A gateway admin; ``totp_sealed`` opens with ``admin_totp_aad(id)``."""

    id: str
    email: str
    name: str
    password_hash: str
    totp_sealed: bytes
    last_step: int | None
    created_at: float
    disabled_at: float | None

    @property
    def disabled(self) -> bool:
        return self.disabled_at is not None


@dataclass(frozen=True, kw_only=True, slots=True)
class AdminSession:
    """An admin's signed-in session, stored by the hash of its id."""

    id_hash: str
    admin_id: str
    created_at: float
    last_seen_at: float
    expires_at: float
    csrf_secret: str
    client_addr: str | None
    ended_at: float | None


_ADMIN_COLUMNS = (
    "id, email, name, password_hash, totp_secret, totp_last_step, created_at, disabled_at"
)
_SESSION_COLUMNS = (
    "id_hash, admin_id, created_at, last_seen_at, expires_at, csrf_secret, client_addr, ended_at"
)


def _admin(row: Row) -> Admin:
    step = row["totp_last_step"]
    return Admin(
        id=row["id"],
        email=row["email"],
        name=row["name"],
        password_hash=row["password_hash"],
        totp_sealed=sealed_bytes(row["totp_secret"]),
        last_step=None if step is None else int(step),
        created_at=row["created_at"],
        disabled_at=row["disabled_at"],
    )


def _session(row: Row) -> AdminSession:
    return AdminSession(
        id_hash=row["id_hash"],
        admin_id=row["admin_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        csrf_secret=row["csrf_secret"],
        client_addr=row["client_addr"],
        ended_at=row["ended_at"],
    )


class AdminRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, admin: Admin) -> Admin:
        """Store a new admin; ConflictError if an admin has this email already."""
        async with self._db.transaction() as tx:
            key = email_key(admin.email)
            if await tx.fetch_one(
                "SELECT 1 AS found FROM admins WHERE email_key = :key", {"key": key}
            ):
                raise ConflictError(f"an admin with the email {admin.email!r} exists already")
            await tx.execute(
                f"INSERT INTO admins ({_ADMIN_COLUMNS}, email_key) VALUES (:id, :email, :name,"  # noqa: S608
                " :password_hash, :totp_secret, :last_step, :created_at, :disabled_at, :key)",
                {
                    "id": admin.id,
                    "email": admin.email,
                    "name": admin.name,
                    "password_hash": admin.password_hash,
                    "totp_secret": sealed_text(admin.totp_sealed),
                    "last_step": admin.last_step,
                    "created_at": admin.created_at,
                    "disabled_at": admin.disabled_at,
                    "key": key,
                },
            )
        return admin

    async def find_by_email(self, email: str) -> Admin | None:
        row = await self._db.fetch_one(
            f"SELECT {_ADMIN_COLUMNS} FROM admins WHERE email_key = :key",  # noqa: S608
            {"key": email_key(email)},
        )
        return _admin(row) if row is not None else None

    async def get(self, admin_id: str) -> Admin:
        row = await self._db.fetch_one(
            f"SELECT {_ADMIN_COLUMNS} FROM admins WHERE id = :id",  # noqa: S608
            {"id": admin_id},
        )
        if row is None:
            raise NotFoundError(f"no admin has id {admin_id!r}")
        return _admin(row)

    async def list(self) -> builtins.list[Admin]:
        rows = await self._db.fetch_all(
            f"SELECT {_ADMIN_COLUMNS} FROM admins ORDER BY email_key"  # noqa: S608
        )
        return [_admin(row) for row in rows]

    async def disable(self, admin_id: str, now: float) -> bool:
        """Disable an admin and end their open sessions, in one transaction; False if the
        admin was disabled already. NotFoundError for an unknown id."""
        async with self._db.transaction() as tx:
            if not await tx.fetch_one(
                "SELECT 1 AS found FROM admins WHERE id = :id", {"id": admin_id}
            ):
                raise NotFoundError(f"no admin has id {admin_id!r}")
            changed = await tx.execute(
                "UPDATE admins SET disabled_at = :now WHERE id = :id AND disabled_at IS NULL",
                {"now": now, "id": admin_id},
            )
            await tx.execute(
                "UPDATE admin_sessions SET ended_at = :now"
                " WHERE admin_id = :id AND ended_at IS NULL",
                {"now": now, "id": admin_id},
            )
        return changed > 0

    async def accept_step(self, admin_id: str, step: int) -> bool:
        """Record ``step`` as the admin's last accepted TOTP step if it is later than the one
        stored; False (nothing changed) for a replayed or older code, or a disabled admin."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE admins SET totp_last_step = :step WHERE id = :id AND disabled_at IS NULL"
                " AND (totp_last_step IS NULL OR totp_last_step < :step)",
                {"step": step, "id": admin_id},
            )
        return changed > 0

    async def add_session(self, session: AdminSession) -> None:
        """Store a new session; NotFoundError unless the admin exists and is enabled."""
        async with self._db.transaction() as tx:
            if not await tx.fetch_one(
                "SELECT 1 AS found FROM admins WHERE id = :id AND disabled_at IS NULL",
                {"id": session.admin_id},
            ):
                raise NotFoundError(f"no enabled admin has id {session.admin_id!r}")
            await tx.execute(
                f"INSERT INTO admin_sessions ({_SESSION_COLUMNS}) VALUES (:id_hash, :admin_id,"  # noqa: S608
                " :created_at, :last_seen_at, :expires_at, :csrf_secret, :client_addr, :ended_at)",
                {
                    "id_hash": session.id_hash,
                    "admin_id": session.admin_id,
                    "created_at": session.created_at,
                    "last_seen_at": session.last_seen_at,
                    "expires_at": session.expires_at,
                    "csrf_secret": session.csrf_secret,
                    "client_addr": session.client_addr,
                    "ended_at": session.ended_at,
                },
            )

    async def session(self, id_hash: str) -> tuple[AdminSession, Admin] | None:
        """The session with this id hash and its admin, ended or not (the caller judges)."""
        row = await self._db.fetch_one(
            f"SELECT {_SESSION_COLUMNS} FROM admin_sessions WHERE id_hash = :id_hash",  # noqa: S608
            {"id_hash": id_hash},
        )
        if row is None:
            return None
        session = _session(row)
        try:
            return session, await self.get(session.admin_id)
        except NotFoundError:
            return None

    async def touch_session(self, id_hash: str, now: float) -> None:
        """Note a use of an open session (times only move forward)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE admin_sessions SET last_seen_at = :now"
                " WHERE id_hash = :id_hash AND ended_at IS NULL AND last_seen_at < :now",
                {"now": now, "id_hash": id_hash},
            )

    async def end_session(self, id_hash: str, now: float) -> bool:
        """End a session; False if it was unknown or had already ended."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE admin_sessions SET ended_at = :now"
                " WHERE id_hash = :id_hash AND ended_at IS NULL",
                {"now": now, "id_hash": id_hash},
            )
        return changed > 0

    async def purge_sessions(self, now: float, keep_seconds: float) -> int:
        """Delete sessions that ended or expired more than ``keep_seconds`` ago."""
        cutoff = now - keep_seconds
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM admin_sessions WHERE ended_at < :cutoff OR expires_at < :cutoff",
                {"cutoff": cutoff},
            )
