"""Sign-in sessions, stored by the hash of their id: create, look up, touch, end and purge."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import ConflictError, NotFoundError
from gateway.store.database import Database, Row
from gateway.store.records import SessionRecord
from gateway.store.revocations import revoke

_SELECT = (
    "SELECT id_hash, user_id, created_at, last_seen_at, expires_at, csrf_secret, client_addr,"
    " ended_at FROM sessions"
)


def _session(row: Row) -> SessionRecord:
    return SessionRecord(
        id_hash=row["id_hash"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        csrf_secret=row["csrf_secret"],
        client_addr=row["client_addr"],
        ended_at=row["ended_at"],
    )


class SessionRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: SessionRecord) -> None:
        """Store a new session; NotFoundError for an unknown user, ConflictError for a reused id."""
        async with self._db.transaction() as tx:
            if not await tx.fetch_one(
                "SELECT 1 AS found FROM users WHERE id = :id", {"id": record.user_id}
            ):
                raise NotFoundError(f"no user has id {record.user_id!r}")
            if await tx.fetch_one(
                "SELECT 1 AS found FROM sessions WHERE id_hash = :id_hash",
                {"id_hash": record.id_hash},
            ):
                raise ConflictError("a session with this id already exists")
            await tx.execute(
                "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at,"
                " csrf_secret, client_addr, ended_at) VALUES (:id_hash, :user_id, :created_at,"
                " :last_seen_at, :expires_at, :csrf_secret, :client_addr, :ended_at)",
                {
                    "id_hash": record.id_hash,
                    "user_id": record.user_id,
                    "created_at": record.created_at,
                    "last_seen_at": record.last_seen_at,
                    "expires_at": record.expires_at,
                    "csrf_secret": record.csrf_secret,
                    "client_addr": record.client_addr,
                    "ended_at": record.ended_at,
                },
            )

    async def get(self, id_hash: str) -> SessionRecord | None:
        """The session with this id hash, ended or not (the caller judges), or None."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id_hash = :id_hash", {"id_hash": id_hash})
        return _session(row) if row is not None else None

    async def touch_many(self, last_seen: Mapping[str, float]) -> None:
        """Record when sessions were last seen, in one transaction (for a write-behind flusher).

        Times only move forward, and ended or unknown sessions are left alone.
        """
        if not last_seen:
            return
        async with self._db.transaction() as tx:
            await tx.execute_many(
                "UPDATE sessions SET last_seen_at = :seen"
                " WHERE id_hash = :id_hash AND ended_at IS NULL AND last_seen_at < :seen",
                [{"seen": seen, "id_hash": id_hash} for id_hash, seen in last_seen.items()],
            )

    async def end(self, id_hash: str, now: float) -> bool:
        """End a session; False if it was unknown or had already ended."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE sessions SET ended_at = :now WHERE id_hash = :id_hash AND ended_at IS NULL",
                {"now": now, "id_hash": id_hash},
            )
            if changed:
                await revoke(tx, now, session_hash=id_hash)
        return changed > 0

    async def end_all_for_user(self, user_id: str, now: float) -> list[str]:
        """End every open session of a user; return the id hashes that were ended."""
        async with self._db.transaction() as tx:
            rows = await tx.fetch_all(
                "SELECT id_hash FROM sessions WHERE user_id = :user_id AND ended_at IS NULL"
                " ORDER BY created_at, id_hash",
                {"user_id": user_id},
            )
            await tx.execute(
                "UPDATE sessions SET ended_at = :now WHERE user_id = :user_id AND ended_at IS NULL",
                {"now": now, "user_id": user_id},
            )
            if rows:
                await revoke(tx, now, user_id=user_id)
        return [row["id_hash"] for row in rows]

    async def purge(self, now: float, keep_seconds: float) -> int:
        """Delete sessions that ended or expired more than keep_seconds ago; return how many."""
        cutoff = now - keep_seconds
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM sessions WHERE ended_at < :cutoff OR expires_at < :cutoff",
                {"cutoff": cutoff},
            )

    async def count_active(self, now: float) -> int:
        """How many sessions are neither ended nor expired at ``now``."""
        row = await self._db.fetch_one(
            "SELECT count(*) AS active FROM sessions WHERE ended_at IS NULL AND expires_at > :now",
            {"now": now},
        )
        return int(row["active"]) if row is not None else 0
