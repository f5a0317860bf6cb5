"""A feed of ended sessions and disabled users, so every process can drop what it has cached."""

from __future__ import annotations

from typing import NamedTuple

from gateway.store.database import Database, Transaction


async def revoke(
    tx: Transaction,
    now: float,
    *,
    session_hash: str | None = None,
    user_id: str | None = None,
) -> None:
    """Append to the feed; called inside the transaction that made the change."""
    await tx.execute(
        "INSERT INTO revocations (at, session_hash, user_id) VALUES (:at, :session_hash, :user_id)",
        {"at": now, "session_hash": session_hash, "user_id": user_id},
    )


class RevocationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest(self) -> int:
        """The id of the newest entry, 0 when the feed is empty."""
        row = await self._db.fetch_one("SELECT coalesce(max(id), 0) AS id FROM revocations")
        return int(row["id"]) if row is not None else 0

    async def since(self, after: int) -> list[tuple[int, str | None, str | None]]:
        """Entries after id ``after``, oldest first: (id, session hash, user id)."""
        rows = await self._db.fetch_all(
            "SELECT id, session_hash, user_id FROM revocations WHERE id > :after ORDER BY id",
            {"after": after},
        )
        return [(int(r["id"]), r["session_hash"], r["user_id"]) for r in rows]

    async def purge(self, before: float) -> int:
        """Forget entries older than ``before`` (no cache holds a session that old)."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM revocations WHERE at < :before", {"before": before}
            )


class ChangeMarks(NamedTuple):
    """Where each change feed stands: what a process polls to learn whether anything it
    caches changed elsewhere."""

    policies: int  # the policy-set version
    facts: int  # the tenant facts version
    revocations: int  # the newest revocation id
    user_changes: int  # the newest user-state change id


async def change_marks(db: Database) -> ChangeMarks:
    """Every feed's mark, in one statement."""
    row = await db.fetch_one(
        "SELECT (SELECT version FROM policy_set WHERE id = 1) AS policies,"
        " (SELECT version FROM facts_version WHERE id = 1) AS facts,"
        " (SELECT coalesce(max(id), 0) FROM revocations) AS revocations,"
        " (SELECT coalesce(max(id), 0) FROM user_changes) AS user_changes"
    )
    if row is None:  # a SELECT without FROM always yields one row
        raise AssertionError("change marks query returned nothing")
    return ChangeMarks(
        policies=int(row["policies"]),
        facts=int(row["facts"]),
        revocations=int(row["revocations"]),
        user_changes=int(row["user_changes"]),
    )
