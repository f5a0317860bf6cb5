"""What the Xero listener last counted of each tenant's rate budget, kept so that another
process (the CLI, a gateway without the listener) can show it, with the time it was counted.

Each process running the listener writes its own governor's counts; the last write for a
tenant wins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.store.database import Database, in_list


@dataclass(frozen=True, kw_only=True)
class CountedBudget:
    """A tenant's budget in words, as a listener's rate governor counted it at ``counted_at``."""

    tenant_id: str
    words: str
    counted_at: float


class RateBudgetRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def save(self, budgets: Sequence[CountedBudget]) -> None:
        """Keep ``budgets``, replacing what was kept for their tenants."""
        if not budgets:
            return
        async with self._db.transaction() as tx:
            for budget in budgets:
                await tx.execute(
                    "INSERT INTO xero_rate_budgets (tenant_id, words, counted_at)"
                    " VALUES (:tenant_id, :words, :counted_at)"
                    " ON CONFLICT (tenant_id) DO UPDATE SET words = excluded.words,"
                    " counted_at = excluded.counted_at",
                    {
                        "tenant_id": budget.tenant_id,
                        "words": budget.words,
                        "counted_at": budget.counted_at,
                    },
                )

    async def for_tenants(self, tenant_ids: Iterable[str]) -> dict[str, CountedBudget]:
        """What is kept for those tenants, by tenant id (tenants never counted are absent)."""
        wanted = sorted(set(tenant_ids))
        if not wanted:
            return {}
        placeholders, params = in_list(wanted)
        query = f"SELECT tenant_id, words, counted_at FROM xero_rate_budgets WHERE tenant_id IN ({placeholders})"  # noqa: S608, E501 (placeholders only)
        rows = await self._db.fetch_all(query, params)
        return {
            str(row["tenant_id"]): CountedBudget(
                tenant_id=str(row["tenant_id"]),
                words=str(row["words"]),
                counted_at=float(row["counted_at"]),
            )
            for row in rows
        }
