"""What an organisation's Xero connections look like to people: one row per connected tenant,
for the connections page, ``xero-gateway xero status`` and the admin API."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.store import CountedBudget, Store
from gateway.store.records import Tenant
from gateway.store.xero import XeroConnection, XeroGrant
from gateway.xero.governor import Budget

STATUS_WORDS = {
    "active": "active",
    "needs_reconnect": "needs reconnect",
    "disconnected": "disconnected",
    "removed_at_xero": "removed at Xero",
}

RateBudget = Callable[[str], str | None]
"""The rate-budget hook: what is left of a tenant's Xero call budget, in words, by tenant id
(None: nothing known). A process running the Xero listener fills it from its rate governor
(``budget_words``); elsewhere the budget comes from what a listener last kept in the store,
with the time it was counted."""


def counted_words(counted: CountedBudget | None) -> str | None:
    """A budget a listener kept in the store, in words with the time it was counted."""
    if counted is None:
        return None
    at = dt.datetime.fromtimestamp(counted.counted_at, dt.UTC)
    return f"{counted.words} (as counted at {at:%Y-%m-%d %H:%M:%S} UTC)"


def budget_words(budget: Budget) -> str:
    """A tenant's budget as the governor counts it, in words: calls left this minute and today,
    calls in flight and queued, and the end of a block Xero asked for."""
    words = (
        f"{budget.minute_remaining:,} calls left this minute, {budget.day_remaining:,} today"
        f" ({budget.tier} tier); {budget.in_flight} in flight, {budget.queued} queued"
    )
    if budget.blocked_until is not None:
        until = dt.datetime.fromtimestamp(budget.blocked_until, dt.UTC)
        words += f"; held back by Xero until {until:%H:%M:%S} UTC"
    return words


@dataclass(frozen=True, kw_only=True)
class ConnectionRow:
    """One connected tenant of one grant, as shown."""

    grant_id: str
    connection_id: str
    tenant_id: str
    tenant_name: str
    country_code: str | None  # the tenants table's, None when no link is active
    source: str | None  # 'xero' or 'manual' (an admin's override), None when unlinked
    status: str  # active, needs_reconnect, disconnected, removed_at_xero
    connected_by: str  # the principal's email, or user id when unknown
    connected_at: float
    last_refresh_at: float | None
    access_expires_at: float
    rate_budget: str | None = None

    @property
    def status_words(self) -> str:
        return STATUS_WORDS.get(self.status, self.status)

    @property
    def active(self) -> bool:
        return self.status == "active"

    def document(self) -> dict[str, Any]:
        """As JSON (times in Unix seconds), for the admin API and the CLI."""
        return {
            "grant_id": self.grant_id,
            "connection_id": self.connection_id,
            "tenant_id": self.tenant_id,
            "tenant_name": self.tenant_name,
            "country_code": self.country_code,
            "source": self.source,
            "status": self.status,
            "connected_by": self.connected_by,
            "connected_at": self.connected_at,
            "last_refresh_at": self.last_refresh_at,
            "access_expires_at": self.access_expires_at,
            "rate_budget": self.rate_budget,
        }


def connection_rows(
    grants: Sequence[XeroGrant],
    connections: Sequence[XeroConnection],
    tenants: Sequence[Tenant],
    emails: dict[str, str],
    rate_budget: RateBudget | None = None,
) -> list[ConnectionRow]:
    """The rows, newest grant first; a tenant's country from its active link."""
    by_grant = {g.id: g for g in grants}
    linked = {t.tenant_id: t for t in tenants if t.active}
    rows = []
    for c in connections:
        grant = by_grant.get(c.grant_id)
        if grant is None:
            continue
        tenant = linked.get(c.tenant_id)
        rows.append(
            ConnectionRow(
                grant_id=grant.id,
                connection_id=c.id,
                tenant_id=c.tenant_id,
                tenant_name=c.tenant_name,
                country_code=tenant.country_code if tenant is not None else None,
                source=tenant.source if tenant is not None else None,
                status=c.status,
                connected_by=emails.get(grant.connected_by, grant.connected_by),
                connected_at=grant.created_at,
                last_refresh_at=grant.last_refresh_at,
                access_expires_at=grant.tokens.expires_at,
                rate_budget=rate_budget(c.tenant_id) if rate_budget is not None else None,
            )
        )
    rows.sort(key=lambda r: (not r.active, -r.connected_at, r.tenant_name))
    return rows


async def load_rows(
    store: Store, org_id: str, rate_budget: RateBudget | None = None
) -> list[ConnectionRow]:
    """The organisation's connection rows, read from the store; without ``rate_budget`` (a
    process not running the Xero listener), budgets as a listener last kept them there."""
    grants = await store.xero.for_org(org_id)
    connections = await store.xero.connections_for_org(org_id)
    if rate_budget is None:
        kept = await store.xero_budgets.for_tenants(c.tenant_id for c in connections)
        rate_budget = lambda tenant_id: counted_words(kept.get(tenant_id))  # noqa: E731
    tenants = await store.tenants.for_org(org_id)
    emails = {u.id: u.email for u in await store.users.list(org_id)}
    return connection_rows(grants, connections, tenants, emails, rate_budget)
