"""Recent sign-ins, per user: when, from which address and browser, and the second factor the
session then passed. Bounded: a user keeps their newest ``KEEP_PER_USER``, and housekeeping
forgets those older than it is told. A sign-in follows its session through the id rotations
of second-factor checks (``follow_rotation``), so the first check a session passes is the
method its sign-in shows."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.database import Database, Row, Transaction
from gateway.store.records import new_id

KEEP_PER_USER = 20
MAX_USER_AGENT = 256


@dataclass(frozen=True, kw_only=True, slots=True)
class SignIn:
    """One sign-in; ``method`` is None while (or if) no second factor was passed in it."""

    id: str
    user_id: str
    at: float
    client_addr: str | None
    user_agent: str
    method: str | None
    session_hash: str | None


def _sign_in(row: Row) -> SignIn:
    return SignIn(
        id=row["id"],
        user_id=row["user_id"],
        at=float(row["at"]),
        client_addr=row["client_addr"],
        user_agent=row["user_agent"],
        method=row["method"],
        session_hash=row["session_hash"],
    )


async def follow_rotation(
    tx: Transaction, old_hash: str, new_hash: str, method: str | None
) -> None:
    """Inside the transaction that gives a session a new id: its sign-in follows the new id,
    and takes ``method`` as the second factor used if it had none yet."""
    await tx.execute(
        "UPDATE sign_ins SET session_hash = :new_hash, method = coalesce(method, :method)"
        " WHERE session_hash = :old_hash",
        {"old_hash": old_hash, "new_hash": new_hash, "method": method},
    )


class SignInRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self,
        *,
        user_id: str,
        at: float,
        client_addr: str | None,
        user_agent: str,
        method: str | None,
        session_hash: str,
    ) -> SignIn:
        """Keep a sign-in, and forget the user's sign-ins beyond the newest KEEP_PER_USER."""
        sign_in = SignIn(
            id=new_id("sgn"),
            user_id=user_id,
            at=at,
            client_addr=client_addr,
            user_agent=" ".join(user_agent.split())[:MAX_USER_AGENT],
            method=method,
            session_hash=session_hash,
        )
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO sign_ins (id, user_id, seq, at, client_addr, user_agent, method,"
                " session_hash) VALUES (:id, :user_id,"
                " (SELECT coalesce(max(seq), 0) + 1 FROM sign_ins WHERE user_id = :user_id),"
                " :at, :client_addr,"
                " :user_agent, :method, :session_hash)",
                {
                    "id": sign_in.id,
                    "user_id": user_id,
                    "at": at,
                    "client_addr": client_addr,
                    "user_agent": sign_in.user_agent,
                    "method": method,
                    "session_hash": session_hash,
                },
            )
            await tx.execute(
                "DELETE FROM sign_ins WHERE user_id = :user_id AND seq <= (SELECT seq FROM"
                " sign_ins WHERE user_id = :user_id ORDER BY seq DESC LIMIT 1 OFFSET :keep)",
                {"user_id": user_id, "keep": KEEP_PER_USER},
            )
        return sign_in

    async def recent(self, user_id: str, *, limit: int = KEEP_PER_USER) -> list[SignIn]:
        """The user's sign-ins, newest first."""
        rows = await self._db.fetch_all(
            "SELECT id, user_id, at, client_addr, user_agent, method, session_hash"
            " FROM sign_ins WHERE user_id = :user_id ORDER BY seq DESC, at DESC, id LIMIT :limit",
            {"user_id": user_id, "limit": limit},
        )
        return [_sign_in(row) for row in rows]

    async def purge(self, *, before: float) -> int:
        """Forget sign-ins older than ``before``."""
        async with self._db.transaction() as tx:
            return await tx.execute("DELETE FROM sign_ins WHERE at < :before", {"before": before})
