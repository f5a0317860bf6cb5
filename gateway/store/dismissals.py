"""Dismissals: how often each user chose "Remind me later" for each policy, counted atomically."""

from __future__ import annotations

from gateway.errors import ConflictError, NotFoundError
from gateway.store.changes import note_change
from gateway.store.database import Database
from gateway.store.sessions import mark_dismissed

# One statement: insert the first dismissal or add one to the count, but only while the
# count is under the limit (a NULL limit means none). It returns no row when the limit stops it.
_RECORD = (
    "INSERT INTO dismissals (user_id, policy_key, count, last_at)"
    " SELECT :user_id, :policy_key, 1, :now WHERE :limit IS NULL OR :limit > 0"
    " ON CONFLICT (user_id, policy_key) DO UPDATE SET"
    " count = dismissals.count + 1, last_at = excluded.last_at"
    " WHERE :limit IS NULL OR dismissals.count < :limit"
    " RETURNING count"
)


class DismissalLimitError(ConflictError):
    """The user has already used every "Remind me later" the policy allows."""


class DismissalRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def count(self, user_id: str, policy_key: str) -> int:
        """How many times the user has dismissed this policy (0 if never)."""
        row = await self._db.fetch_one(
            "SELECT count FROM dismissals WHERE user_id = :user_id AND policy_key = :policy_key",
            {"user_id": user_id, "policy_key": policy_key},
        )
        return int(row["count"]) if row is not None else 0

    async def counts_for_user(self, user_id: str) -> dict[str, int]:
        """The user's dismissal count for each policy key they have dismissed at least once."""
        rows = await self._db.fetch_all(
            "SELECT policy_key, count FROM dismissals WHERE user_id = :user_id ORDER BY policy_key",
            {"user_id": user_id},
        )
        return {row["policy_key"]: int(row["count"]) for row in rows}

    async def record(
        self,
        user_id: str,
        policy_key: str,
        now: float,
        *,
        limit: int | None,
        session_hash: str | None = None,
    ) -> int:
        """Count one more dismissal and return the new count.

        If ``limit`` is given and the count has already reached it, DismissalLimitError is
        raised and nothing changes; the check and the increment are one statement, so
        concurrent calls can never take the count past the limit. NotFoundError if there is
        no such user. The session the user dismissed the prompt in (``session_hash``) is
        marked as such in the same transaction, and the user-state feed tells every process.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be None or at least 0, not {limit}")
        async with self._db.transaction() as tx:
            if not await tx.fetch_one(
                "SELECT 1 AS found FROM users WHERE id = :id", {"id": user_id}
            ):
                raise NotFoundError(f"no user has id {user_id!r}")
            params = {"user_id": user_id, "policy_key": policy_key, "now": now, "limit": limit}
            row = await tx.fetch_one(_RECORD, params)
            if row is None:
                raise DismissalLimitError(
                    f"user {user_id!r} has already dismissed {policy_key!r} {limit} times, "
                    "the most allowed"
                )
            if session_hash is not None:
                await mark_dismissed(tx, session_hash, now)
            await note_change(tx, now, kind="dismissal", user_id=user_id, session_hash=session_hash)
            return int(row["count"])

    async def reset(self, user_id: str, now: float) -> None:
        """Forget every dismissal the user made."""
        async with self._db.transaction() as tx:
            deleted = await tx.execute(
                "DELETE FROM dismissals WHERE user_id = :user_id", {"user_id": user_id}
            )
            if deleted:
                await note_change(tx, now, kind="dismissal", user_id=user_id)
