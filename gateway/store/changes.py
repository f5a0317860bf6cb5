"""A feed of changes to a user's second-factor state (checks passed, prompts dismissed,
factors enrolled), so every process can refresh what it has cached."""

from __future__ import annotations

from gateway.store.database import Database, Transaction
from gateway.store.records import USER_CHANGE_KINDS, UserChange


async def note_change(
    tx: Transaction,
    now: float,
    *,
    kind: str,
    user_id: str,
    session_hash: str | None = None,
) -> None:
    """Append to the feed; called inside the transaction that made the change. The id is the
    next after the newest (which a purge always keeps), set here rather than by the database."""
    if kind not in USER_CHANGE_KINDS:
        raise ValueError(f"unknown change kind {kind!r}; use one of {', '.join(USER_CHANGE_KINDS)}")
    await tx.execute(
        "INSERT INTO user_changes (id, at, kind, user_id, session_hash)"
        " VALUES ((SELECT coalesce(max(id), 0) + 1 FROM user_changes),"
        " :at, :kind, :user_id, :session_hash)",
        {"at": now, "kind": kind, "user_id": user_id, "session_hash": session_hash},
    )


class UserChangeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def latest(self) -> int:
        """The id of the newest entry, 0 when the feed is empty."""
        row = await self._db.fetch_one("SELECT coalesce(max(id), 0) AS id FROM user_changes")
        return int(row["id"]) if row is not None else 0

    async def since(self, after: int) -> list[UserChange]:
        """Entries after id ``after``, oldest first."""
        rows = await self._db.fetch_all(
            "SELECT id, kind, user_id, session_hash FROM user_changes WHERE id > :after"
            " ORDER BY id",
            {"after": after},
        )
        return [
            UserChange(
                id=int(r["id"]),
                kind=r["kind"],
                user_id=r["user_id"],
                session_hash=r["session_hash"],
            )
            for r in rows
        ]

    async def purge(self, before: float) -> int:
        """Forget entries older than ``before`` (no cache holds a session that old). The
        newest entry always stays: ids are only ever larger than it, so no follower that
        has seen it can miss a later one."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM user_changes WHERE at < :before"
                " AND id < (SELECT max(id) FROM user_changes)",
                {"before": before},
            )
