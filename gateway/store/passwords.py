"""Passwords changing hands: reset links kept by keyed hash (never the token), and replacing a
user's password together with ending their sessions, in one transaction.

A user has at most one live link: issuing one retires the others. Spending a link is one
conditional UPDATE, so of two requests racing with one link exactly one wins; spent, retired
and expired rows stay until purged, so a reused link is told why rather than "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.database import Database, Row, Transaction
from gateway.store.records import SessionRecord
from gateway.store.revocations import revoke
from gateway.store.sessions import insert_session
from gateway.store.sign_ins import follow_rotation

_COLUMNS = "token_hash, user_id, created_at, expires_at, used_at, retired_at"


@dataclass(frozen=True, kw_only=True)
class ResetLink:
    """A reset link as the store holds it."""

    token_hash: str
    user_id: str
    created_at: float
    expires_at: float
    used_at: float | None
    retired_at: float | None


def _link(row: Row) -> ResetLink:
    return ResetLink(
        token_hash=row["token_hash"],
        user_id=row["user_id"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
        retired_at=row["retired_at"],
    )


async def _replace(tx: Transaction, user_id: str, password_hash: str, now: float) -> list[str]:
    """Set the user's password hash and end every open session of theirs, each named in the
    revocation feed so every process drops it; returns the ended sessions' hashes."""
    await tx.execute(
        "UPDATE users SET password_hash = :password_hash WHERE id = :id",
        {"password_hash": password_hash, "id": user_id},
    )
    rows = await tx.fetch_all(
        "SELECT id_hash FROM sessions WHERE user_id = :user_id AND ended_at IS NULL",
        {"user_id": user_id},
    )
    ended = [row["id_hash"] for row in rows]
    await tx.execute(
        "UPDATE sessions SET ended_at = :now WHERE user_id = :user_id AND ended_at IS NULL",
        {"now": now, "user_id": user_id},
    )
    for id_hash in ended:
        await revoke(tx, now, session_hash=id_hash)
    return ended


class PasswordRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue_reset(
        self, *, token_hash: str, user_id: str, now: float, expires_at: float
    ) -> None:
        """Store a new link for the user, retiring every earlier one still live."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE password_resets SET retired_at = :now WHERE user_id = :user_id"
                " AND used_at IS NULL AND retired_at IS NULL",
                {"now": now, "user_id": user_id},
            )
            await tx.execute(
                f"INSERT INTO password_resets ({_COLUMNS})"  # noqa: S608
                " VALUES (:token_hash, :user_id, :now, :expires_at, NULL, NULL)",
                {
                    "token_hash": token_hash,
                    "user_id": user_id,
                    "now": now,
                    "expires_at": expires_at,
                },
            )

    async def find_reset(self, token_hashes: Sequence[str]) -> ResetLink | None:
        """The link whose token hashes to one of ``token_hashes`` (one per key in rotation)."""
        if not token_hashes:
            return None
        names = {f"h{n}": value for n, value in enumerate(token_hashes)}
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM password_resets"  # noqa: S608
            f" WHERE token_hash IN ({', '.join(':' + name for name in names)})",
            names,
        )
        return _link(row) if row is not None else None

    async def retire_reset(self, token_hash: str, *, now: float) -> None:
        """Retire a link (its email could not be sent)."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE password_resets SET retired_at = :now WHERE token_hash = :token_hash"
                " AND used_at IS NULL AND retired_at IS NULL",
                {"now": now, "token_hash": token_hash},
            )

    async def reset(
        self, *, token_hash: str, user_id: str, password_hash: str, now: float
    ) -> list[str] | None:
        """Spend the link if it is the user's, live and unexpired, and in the same transaction
        set the new password and end all the user's sessions. Returns the ended sessions'
        hashes, or None (nothing changed) if the link could not be spent."""
        async with self._db.transaction() as tx:
            spent = await tx.execute(
                "UPDATE password_resets SET used_at = :now WHERE token_hash = :token_hash"
                " AND user_id = :user_id AND used_at IS NULL AND retired_at IS NULL"
                " AND expires_at > :now",
                {"now": now, "token_hash": token_hash, "user_id": user_id},
            )
            if spent != 1:
                return None
            return await _replace(tx, user_id, password_hash, now)

    async def change(
        self,
        *,
        user_id: str,
        password_hash: str,
        now: float,
        session_hash: str,
        successor: SessionRecord,
    ) -> list[str] | None:
        """Set the new password and end all the user's sessions, while the session
        ``session_hash`` (the one that asked) lives on as ``successor``, under a new id, in
        the same transaction. None (nothing changed) if that session is no longer open."""
        async with self._db.transaction() as tx:
            open_row = await tx.fetch_one(
                "SELECT 1 AS found FROM sessions WHERE id_hash = :id_hash AND user_id = :user_id"
                " AND ended_at IS NULL AND expires_at > :now",
                {"id_hash": session_hash, "user_id": user_id, "now": now},
            )
            if open_row is None:
                return None
            ended = await _replace(tx, user_id, password_hash, now)
            await insert_session(tx, successor)
            await follow_rotation(tx, session_hash, successor.id_hash, None)
            return ended

    async def purge(self, *, before: float) -> int:
        """Forget links that expired before ``before`` (spent or not): they can only ever be
        refused."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM password_resets WHERE expires_at <= :before", {"before": before}
            )
