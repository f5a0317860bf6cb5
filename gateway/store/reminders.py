"""Reminder claims: each reminder email and weekly summary claimed once, across processes.

A claim is taken with a conditional INSERT on the claim's key (kind, recipient, policy,
point); only the process whose INSERT added the row sends. A failed send leaves the claim
``failed`` with a time to try again (taken back by a conditional UPDATE, so again only one
process retries) or ``abandoned`` once the tries are used up; a sent one is ``sent``. A claim
left ``sending`` by a process that died mid-send is never sent again: at most once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from gateway.audit import Event
from gateway.store.audit import record_change
from gateway.store.database import Database, Row
from gateway.store.records import AuditEntry

ClaimKind = Literal["reminder", "summary"]
ClaimStatus = Literal["sending", "sent", "failed", "abandoned"]
ACTOR = "reminders"


@dataclass(frozen=True, kw_only=True)
class ClaimKey:
    """What is sent once: a reminder (policy, point) or a summary ("", ISO week) to one user."""

    kind: ClaimKind
    recipient_id: str
    policy_id: str
    point: str


@dataclass(frozen=True, kw_only=True)
class Claim:
    key: ClaimKey
    status: ClaimStatus
    attempts: int
    retry_at: float | None  # when a failed claim may be tried again


def _params(key: ClaimKey) -> dict[str, str]:
    return {
        "kind": key.kind,
        "recipient_id": key.recipient_id,
        "policy_id": key.policy_id,
        "point": key.point,
    }


def _claim(row: Row) -> Claim:
    key = ClaimKey(
        kind=row["kind"],
        recipient_id=row["recipient_id"],
        policy_id=row["policy_id"],
        point=row["point"],
    )
    retry = row["retry_at"]
    return Claim(
        key=key,
        status=row["status"],
        attempts=int(row["attempts"]),
        retry_at=float(retry) if retry is not None else None,
    )


class ReminderClaimRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def all(self) -> list[Claim]:
        """Every claim made (a few per user in scope of a policy, and one per principal-week)."""
        rows = await self._db.fetch_all(
            "SELECT kind, recipient_id, policy_id, point, status, attempts, retry_at"
            " FROM reminder_claims"
        )
        return [_claim(row) for row in rows]

    async def claim(self, key: ClaimKey, now: float) -> bool:
        """Claim a first send; True only for the one caller whose INSERT added the row."""
        async with self._db.transaction() as tx:
            added = await tx.execute(
                "INSERT INTO reminder_claims (kind, recipient_id, policy_id, point, status,"
                " attempts, claimed_at, updated_at, retry_at)"
                " VALUES (:kind, :recipient_id, :policy_id, :point, 'sending', 1, :now, :now,"
                " NULL) ON CONFLICT DO NOTHING",
                {**_params(key), "now": now},
            )
        return added == 1

    async def reclaim(self, key: ClaimKey, now: float) -> bool:
        """Take back a failed claim whose retry time has come; True for one caller only."""
        async with self._db.transaction() as tx:
            taken = await tx.execute(
                "UPDATE reminder_claims SET status = 'sending', attempts = attempts + 1,"
                " updated_at = :now, retry_at = NULL WHERE kind = :kind"
                " AND recipient_id = :recipient_id AND policy_id = :policy_id AND point = :point"
                " AND status = 'failed' AND retry_at <= :now",
                {**_params(key), "now": now},
            )
        return taken == 1

    async def settle(
        self,
        key: ClaimKey,
        status: ClaimStatus,
        event: Event,
        *,
        now: float,
        retry_at: float | None,
    ) -> None:
        """Mark a claim this process holds as sent, failed (until ``retry_at``) or abandoned,
        with its audit event, in one transaction."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE reminder_claims SET status = :status, updated_at = :now,"
                " retry_at = :retry_at WHERE kind = :kind AND recipient_id = :recipient_id"
                " AND policy_id = :policy_id AND point = :point AND status = 'sending'",
                {**_params(key), "status": status, "now": now, "retry_at": retry_at},
            )
            await record_change(tx, AuditEntry(actor=ACTOR), event, at=now)

    async def purge(self, *, before: float) -> int:
        """Forget claims last changed before ``before``; how many went."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM reminder_claims WHERE updated_at < :before", {"before": before}
            )
