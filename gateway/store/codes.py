"""One-time codes sent by SMS or email: one live code per user and purpose, used at most once.

The row keeps the code's keyed hash (never the code), the channel, the destination sealed at
rest (``Keys.at_rest``, bound to the row), and its lifetime. Issuing a code for a user and
purpose retires the one before it in the same transaction; consuming is one conditional
UPDATE, so of two racing submissions exactly one wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.database import Database, Row
from gateway.store.records import new_id
from gateway.store.sealed import SealedColumn, register_sealed_column, sealed_bytes, sealed_text

CHANNELS = ("sms", "email")
_COLUMNS = "id, user_id, purpose, channel, destination, digest, issued_at, expires_at, used_at"


def destination_aad(code_id: str, user_id: str) -> bytes:
    """The associated data a code's sealed destination is bound to: its row and its user."""
    return f"one_time_codes.destination\x00{code_id}\x00{user_id}".encode()


DESTINATION_COLUMN = register_sealed_column(
    SealedColumn(
        table="one_time_codes",
        id_column="id",
        column="destination",
        aad=lambda row: destination_aad(row["id"], row["user_id"]),
    )
)


@dataclass(frozen=True, kw_only=True)
class OneTimeCodeRecord:
    """A code as the store holds it; ``sealed_destination`` opens with its row's AAD."""

    id: str
    user_id: str
    purpose: str
    channel: str
    sealed_destination: bytes
    digest: str
    issued_at: float
    expires_at: float
    used_at: float | None


def _record(row: Row) -> OneTimeCodeRecord:
    return OneTimeCodeRecord(
        id=row["id"],
        user_id=row["user_id"],
        purpose=row["purpose"],
        channel=row["channel"],
        sealed_destination=sealed_bytes(row["destination"]),
        digest=row["digest"],
        issued_at=row["issued_at"],
        expires_at=row["expires_at"],
        used_at=row["used_at"],
    )


def new_code_id() -> str:
    """An id for a code to be issued (the destination is sealed to it before it is stored)."""
    return new_id("otc")


class OneTimeCodeRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(
        self,
        *,
        code_id: str,
        user_id: str,
        purpose: str,
        channel: str,
        sealed_destination: bytes,
        digest: str,
        now: float,
        expires_at: float,
    ) -> OneTimeCodeRecord:
        """Store a new code for (user, purpose), retiring any code sent before it."""
        if channel not in CHANNELS:
            raise ValueError(f"a code is sent by one of {CHANNELS}, not {channel!r}")
        record = OneTimeCodeRecord(
            id=code_id,
            user_id=user_id,
            purpose=purpose,
            channel=channel,
            sealed_destination=sealed_destination,
            digest=digest,
            issued_at=now,
            expires_at=expires_at,
            used_at=None,
        )
        async with self._db.transaction() as tx:
            await tx.execute(
                "DELETE FROM one_time_codes WHERE user_id = :user_id AND purpose = :purpose",
                {"user_id": user_id, "purpose": purpose},
            )
            await tx.execute(
                f"INSERT INTO one_time_codes ({_COLUMNS}) VALUES (:id, :user_id, :purpose,"  # noqa: S608
                " :channel, :destination, :digest, :issued_at, :expires_at, NULL)",
                {
                    "id": code_id,
                    "user_id": user_id,
                    "purpose": purpose,
                    "channel": channel,
                    "destination": sealed_text(sealed_destination),
                    "digest": digest,
                    "issued_at": now,
                    "expires_at": expires_at,
                },
            )
        return record

    async def current(self, user_id: str, purpose: str) -> OneTimeCodeRecord | None:
        """The last code issued for (user, purpose), used or not, expired or not."""
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM one_time_codes"  # noqa: S608
            " WHERE user_id = :user_id AND purpose = :purpose",
            {"user_id": user_id, "purpose": purpose},
        )
        return _record(row) if row is not None else None

    async def consume(self, code_id: str, *, now: float) -> bool:
        """Mark the code used if it is still unused and unexpired; True if this call did."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE one_time_codes SET used_at = :now"
                " WHERE id = :id AND used_at IS NULL AND expires_at > :now",
                {"id": code_id, "now": now},
            )
        return changed == 1

    async def retire(self, code_id: str) -> bool:
        """Drop a code that was never delivered (unless it was used meanwhile)."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "DELETE FROM one_time_codes WHERE id = :id AND used_at IS NULL", {"id": code_id}
            )
        return changed == 1

    async def purge(self, *, before: float) -> int:
        """Delete codes that expired before ``before``: they can only ever be refused."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM one_time_codes WHERE expires_at <= :before", {"before": before}
            )
