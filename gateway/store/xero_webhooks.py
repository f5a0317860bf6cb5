"""Xero webhook events kept until the app has them: stored when Xero posts them, claimed by
one forwarder at a time, then marked delivered (or abandoned after the retry rule's cap).

A claim is a conditional UPDATE naming a fresh claim id and a lease: of several forwarders
(tasks or gateway processes) on one database exactly one wins an event, and a forwarder that
died mid-delivery leaves it to be claimed again once the lease has run out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.store.database import Database, Row
from gateway.store.records import new_id

_COLUMNS = (
    "id, received_at, tenant_id, tenant_type, event_category, event_type, resource_id,"
    " document, attempts, next_attempt_at, claim, claimed_until, delivered_at, abandoned_at,"
    " last_error"
)
_PENDING = "delivered_at IS NULL AND abandoned_at IS NULL"
_FREE = "(claimed_until IS NULL OR claimed_until <= :now)"
ERROR_CHARS = 500  # of a failure's description kept with the event


@dataclass(frozen=True, kw_only=True)
class NewWebhookEvent:
    """An event as received, to be stored (``document`` is its JSON, forwarded as it is)."""

    tenant_id: str
    tenant_type: str
    event_category: str
    event_type: str
    resource_id: str
    document: str


@dataclass(frozen=True, kw_only=True)
class StoredWebhookEvent(NewWebhookEvent):
    """A stored event and where its forwarding stands."""

    id: str
    received_at: float
    attempts: int  # attempts started, including one under way
    next_attempt_at: float
    claim: str | None
    claimed_until: float | None
    delivered_at: float | None
    abandoned_at: float | None
    last_error: str | None


def _record(row: Row) -> StoredWebhookEvent:
    return StoredWebhookEvent(**{name: row[name] for name in _COLUMNS.replace(" ", "").split(",")})


class WebhookEventRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, events: Sequence[NewWebhookEvent], *, now: float) -> list[str]:
        """Store a delivery's events in one transaction, due at once; return their ids."""
        ids = [new_id("xwh") for _ in events]
        async with self._db.transaction() as tx:
            await tx.execute_many(
                "INSERT INTO xero_webhook_events (id, received_at, tenant_id, tenant_type,"
                " event_category, event_type, resource_id, document, attempts, next_attempt_at)"
                " VALUES (:id, :now, :tenant_id, :tenant_type, :event_category, :event_type,"
                " :resource_id, :document, 0, :now)",
                [
                    {
                        "id": event_id,
                        "now": now,
                        "tenant_id": event.tenant_id,
                        "tenant_type": event.tenant_type,
                        "event_category": event.event_category,
                        "event_type": event.event_type,
                        "resource_id": event.resource_id,
                        "document": event.document,
                    }
                    for event_id, event in zip(ids, events, strict=True)
                ],
            )
        return ids

    async def get(self, event_id: str) -> StoredWebhookEvent | None:
        row = await self._db.fetch_one(
            f"SELECT {_COLUMNS} FROM xero_webhook_events WHERE id = :id",  # noqa: S608
            {"id": event_id},
        )
        return _record(row) if row is not None else None

    async def due(self, *, now: float, limit: int) -> list[StoredWebhookEvent]:
        """Undelivered events whose next attempt is due and that no live claim holds, oldest
        first (what a forwarder may try to claim)."""
        rows = await self._db.fetch_all(
            f"SELECT {_COLUMNS} FROM xero_webhook_events"  # noqa: S608
            f" WHERE {_PENDING} AND next_attempt_at <= :now AND {_FREE}"
            " ORDER BY next_attempt_at, received_at, id LIMIT :limit",
            {"now": now, "limit": limit},
        )
        return [_record(row) for row in rows]

    async def claim(self, event_id: str, *, now: float, lease_until: float) -> str | None:
        """Take the event for one attempt until ``lease_until``: the claim id if this call won
        it, None if it was delivered, abandoned, not due or claimed by another meanwhile."""
        claim = new_id("clm")
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_webhook_events SET claim = :claim,"  # noqa: S608
                " claimed_until = :lease_until, attempts = attempts + 1"
                f" WHERE id = :id AND {_PENDING} AND next_attempt_at <= :now AND {_FREE}",
                {"claim": claim, "lease_until": lease_until, "id": event_id, "now": now},
            )
        return claim if changed == 1 else None

    async def mark_delivered(self, event_id: str, claim: str, *, now: float) -> bool:
        """Record the app's acceptance of the attempt ``claim`` made; True if the claim held."""
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                "UPDATE xero_webhook_events SET delivered_at = :now, claim = NULL,"  # noqa: S608
                " claimed_until = NULL, last_error = NULL"
                f" WHERE id = :id AND claim = :claim AND {_PENDING}",
                {"now": now, "id": event_id, "claim": claim},
            )
        return changed == 1

    async def mark_failed(
        self, event_id: str, claim: str, *, now: float, error: str, retry_at: float | None
    ) -> bool:
        """Record a failed attempt: due again at ``retry_at``, or abandoned when it is None.
        True if the claim held."""
        params = {"id": event_id, "claim": claim, "error": error[:ERROR_CHARS], "now": now}
        if retry_at is None:
            change = "abandoned_at = :now"
        else:
            change = "next_attempt_at = :retry_at"
            params["retry_at"] = retry_at
        async with self._db.transaction() as tx:
            changed = await tx.execute(
                f"UPDATE xero_webhook_events SET {change}, claim = NULL,"  # noqa: S608
                " claimed_until = NULL, last_error = :error"
                f" WHERE id = :id AND claim = :claim AND {_PENDING}",
                params,
            )
        return changed == 1

    async def pending_count(self) -> int:
        row = await self._db.fetch_one(
            f"SELECT COUNT(*) AS n FROM xero_webhook_events WHERE {_PENDING}"  # noqa: S608
        )
        return int(row["n"]) if row is not None else 0

    async def purge(self, *, before: float) -> int:
        """Forget events delivered or abandoned before ``before`` (the audit trail keeps them)."""
        async with self._db.transaction() as tx:
            return await tx.execute(
                "DELETE FROM xero_webhook_events"
                " WHERE (delivered_at IS NOT NULL AND delivered_at < :before)"
                " OR (abandoned_at IS NOT NULL AND abandoned_at < :before)",
                {"before": before},
            )
