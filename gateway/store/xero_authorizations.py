"""Single-use ``state`` values of the Xero connect flow, each bound to the session that began
it: the state's keyed hash (never the state), the PKCE code verifier sealed at rest
(``Keys.at_rest``, bound to the row), where to return, and the user and organisation.

Consuming is one conditional UPDATE, so of two callbacks racing with one state exactly one
wins; used rows stay until purged, so a replay is told "already used" rather than "unknown".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.database import Database, Row
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_bytes, sealed_text

_COLUMNS = (
    "state_hash, session_hash, user_id, org_id, verifier, next_path, created_at, expires_at,"
    " used_at"
)


def verifier_aad(state_hash: str, session_hash: str) -> bytes:
    """The associated data a sealed verifier is bound to: its state and its session."""
    return f"xero_authorizations.verifier\x00{state_hash}\x00{session_hash}".encode()


VERIFIER_COLUMN = register_sealed_column(
    SealedColumn(
        table="xero_authorizations",
        id_column="state_hash",
        column="verifier",
        aad=lambda row: verifier_aad(row["state_hash"], row["session_hash"]),
    )
)


@dataclass(frozen=True, kw_only=True)
class AuthorizationRecord:
    """A begun connect flow as the store holds it; ``sealed_verifier`` opens with
    :func:`verifier_aad` of its row."""

    state_hash: str
    session_hash: str
    user_id: str
    org_id: str
    sealed_verifier: bytes
    next_path: str
    created_at: float
    expires_at: float
    used_at: float | None


def _record(row: Row) -> AuthorizationRecord:
    return AuthorizationRecord(
        state_hash=row["state_hash"],
        session_hash=row["session_hash"],
        user_id=row["user_id"],
        org_id=row["org_id"],
        sealed_verifier=sealed_bytes(row["verifier"]),
        next_path=row["next_path"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
    )


class AuthorizationRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, record: AuthorizationRecord) -> None:
        async with self._db.transaction() as tx:
            await tx.execute(
                f"INSERT INTO xero_authorizations ({_COLUMNS}) VALUES (:state_hash,"  # noqa: S608
                " :session_hash, :user_id, :org_id, :verifier, :next_path, :created_at,"
                " :expires_at, NULL)",
                {
                    "state_hash": record.state_hash,
                    "session_hash": record.session_hash,
                    "user_id": record.user_id,
                    "org_id": record.org_id,
                    "verifier": sealed_text(record.sealed_verifier),
                    "next_path": record.next_path,
                    "created_at": record.created_at,
                    "expires_at": record.expires_at,
                },
            )

    async def find(self, state_hashes: Sequence[str]) -> AuthorizationRecord | None:
        """The flow whose state hashes to one of ``state_hashes`` (one per key in rotation)."""
        if not state_hashes:
            return None
        names = {f"h{n}": value for n, value in enumerate(state_hashes)}
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM xero_authorizations"  # noqa: S608
            f" WHERE state_hash IN ({', '.join(':' + name for name in names)})",
            names,
        )
        return _record(row) if row is not None else None

    async def consume(self, state_hash: str, session_hash: str, *, now: float) -> bool:
        """Mark the flow used if it is unused, unexpired and the session's; True if this call
        did."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_authorizations SET used_at = :now"
                " WHERE state_hash = :state_hash AND session_hash = :session_hash"
                " AND used_at IS NULL AND expires_at > :now",
                {"now": now, "state_hash": state_hash, "session_hash": session_hash},
            )
        return changed == 1

    async def purge(self, *, before: float) -> int:
        """Forget flows that expired before ``before``: they can only ever be refused."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM xero_authorizations WHERE expires_at <= :before", {"before": before}
            )
