"""Sign-in sessions, stored by the hash of their id: create, look up, touch, rotate, end, purge."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import ConflictError, NotFoundError
from gateway.store.changes import note_change
from gateway.store.database import Database, Row, Transaction
from gateway.store.records import SecondFactor, SessionRecord
from gateway.store.revocations import revoke
from gateway.store.sign_ins import follow_rotation

_SELECT = (
    "SELECT id_hash, user_id, created_at, last_seen_at, expires_at, csrf_secret, client_addr,"
    " ended_at, mfa_method, mfa_at, prompt_dismissed_at, gateway_token_hash FROM sessions"
)


def _session(row: Row) -> SessionRecord:
    method = row["mfa_method"]
    return SessionRecord(
        id_hash=row["id_hash"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        csrf_secret=row["csrf_secret"],
        client_addr=row["client_addr"],
        ended_at=row["ended_at"],
        second_factor=SecondFactor(method=method, at=row["mfa_at"]) if method else None,
        prompt_dismissed_at=row["prompt_dismissed_at"],
        gateway_token_hash=row["gateway_token_hash"],
    )


async def insert_session(tx: Transaction, record: SessionRecord) -> None:
    factor = record.second_factor
    await tx.execute(
        "INSERT INTO sessions (id_hash, user_id, created_at, last_seen_at, expires_at,"
        " csrf_secret, client_addr, ended_at, mfa_method, mfa_at, prompt_dismissed_at,"
        " gateway_token_hash)"
        " VALUES (:id_hash, :user_id, :created_at, :last_seen_at, :expires_at, :csrf_secret,"
        " :client_addr, :ended_at, :mfa_method, :mfa_at, :prompt_dismissed_at,"
        " :gateway_token_hash)",
        {
            "id_hash": record.id_hash,
            "user_id": record.user_id,
            "created_at": record.created_at,
            "last_seen_at": record.last_seen_at,
            "expires_at": record.expires_at,
            "csrf_secret": record.csrf_secret,
            "client_addr": record.client_addr,
            "ended_at": record.ended_at,
            "mfa_method": factor.method if factor else None,
            "mfa_at": factor.at if factor else None,
            "prompt_dismissed_at": record.prompt_dismissed_at,
            "gateway_token_hash": record.gateway_token_hash,
        },
    )


async def mark_dismissed(tx: Transaction, id_hash: str, now: float) -> bool:
    """Note that the session dismissed the 2FA prompt; called inside the transaction that
    counts the dismissal. False if the session is unknown or has ended."""
    changed = await tx.execute(
        "UPDATE sessions SET prompt_dismissed_at = :now"
        " WHERE id_hash = :id_hash AND ended_at IS NULL",
        {"now": now, "id_hash": id_hash},
    )
    return changed > 0


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
            await insert_session(tx, record)

    async def rotate_verified(self, old_hash: str, record: SessionRecord, now: float) -> None:
        """Replace the open session ``old_hash`` by ``record``, which carries the second-factor
        check it just passed, in one transaction: the old id ends (in every process, through
        the revocation feed), the new one is stored, and the user-state feed notes the check.
        NotFoundError if the old session has ended, expired or is another user's."""
        if record.second_factor is None:
            raise ValueError("a session rotated for a second-factor check must record the check")
        async with self._db.transaction() as tx:
            ended = await tx.execute(
                "UPDATE sessions SET ended_at = :now WHERE id_hash = :old_hash"
                " AND user_id = :user_id AND ended_at IS NULL AND expires_at > :now",
                {"now": now, "old_hash": old_hash, "user_id": record.user_id},
            )
            if not ended:
                raise NotFoundError("the session has ended; sign in again")
            await revoke(tx, now, session_hash=old_hash)
            await insert_session(tx, record)
            await follow_rotation(tx, old_hash, record.id_hash, record.second_factor.method)
            await note_change(
                tx, now, kind="mfa", user_id=record.user_id, session_hash=record.id_hash
            )

    async def get(self, id_hash: str) -> SessionRecord | None:
        """The session with this id hash, ended or not (the caller judges), or None."""
        row = await self._db.fetch_one(f"{_SELECT} WHERE id_hash = :id_hash", {"id_hash": id_hash})
        return _session(row) if row is not None else None

    async def find_by_gateway_token(self, token_hash: str) -> str | None:
        """The id hash of the open session whose gateway token hashes to ``token_hash``."""
        row = await self._db.fetch_one(
            "SELECT id_hash FROM sessions WHERE gateway_token_hash = :token_hash"
            " AND ended_at IS NULL",
            {"token_hash": token_hash},
        )
        return str(row["id_hash"]) if row is not None else None

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

    async def purge(self, now: float, keep_seconds: float) -> int:
        """Delete sessions that ended or expired more than keep_seconds ago; return how many."""
        cutoff = now - keep_seconds
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM sessions WHERE ended_at < :cutoff OR expires_at < :cutoff",
                {"cutoff": cutoff},
            )
