"""Tenants: the Xero connections linked to each organisation, and the facts version over them."""

from __future__ import annotations

import sqlite3

from gateway.errors import NotFoundError, StoreError
from gateway.store.database import Database, execute, query_one
from gateway.store.records import TENANT_SOURCES, Tenant

_SELECT = (
    "SELECT org_id, tenant_id, name, country_code, active, linked_at, checked_at, source"
    " FROM tenants"
)
_BUMP = "UPDATE facts_version SET version = version + 1 WHERE id = 1"


def _tenant(row: sqlite3.Row) -> Tenant:
    return Tenant(
        org_id=row["org_id"],
        tenant_id=row["tenant_id"],
        name=row["name"],
        country_code=row["country_code"],
        active=bool(row["active"]),
        linked_at=row["linked_at"],
        checked_at=row["checked_at"],
        source=row["source"],
    )


def _facts(tenant: Tenant) -> tuple[str, str, bool, str]:
    """What a tenant change is judged on: everything but the timestamps."""
    return (tenant.name, tenant.country_code, tenant.active, tenant.source)


class TenantRepository:
    """Tenants linked to organisations, and the facts version.

    The facts version starts at 0 and goes up by one in the same transaction as any change to
    a tenant's facts (a new link, a changed name, country or source, an unlink, a relink), so
    anything computed from tenants can be cached against it. Confirming a link without changing
    it only moves ``checked_at`` and leaves the facts version alone.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def link(
        self,
        *,
        org_id: str,
        tenant_id: str,
        name: str,
        country_code: str,
        now: float,
        source: str = "manual",
    ) -> Tenant:
        """Link a tenant to an organisation, or confirm and update an existing link.

        Relinking an unlinked tenant makes it active again with ``linked_at`` = ``now``; an
        active link keeps its ``linked_at``. ``checked_at`` is always ``now``. NotFoundError if
        the organisation does not exist; StoreError if ``source`` is not 'manual' or 'xero'.
        """
        if source not in TENANT_SOURCES:
            raise StoreError(f"source must be one of {', '.join(TENANT_SOURCES)}, not {source!r}")
        async with self._db.transaction() as conn:
            if not await query_one(conn, "SELECT 1 FROM organisations WHERE id = ?", (org_id,)):
                raise NotFoundError(f"no organisation has id {org_id!r}")
            row = await query_one(
                conn, f"{_SELECT} WHERE org_id = ? AND tenant_id = ?", (org_id, tenant_id)
            )
            old = _tenant(row) if row is not None else None
            tenant = Tenant(
                org_id=org_id,
                tenant_id=tenant_id,
                name=name,
                country_code=country_code,
                active=True,
                linked_at=old.linked_at if old is not None and old.active else now,
                checked_at=now,
                source=source,
            )
            await execute(
                conn,
                "INSERT INTO tenants (org_id, tenant_id, name, country_code, active, linked_at,"
                " checked_at, source) VALUES (?, ?, ?, ?, 1, ?, ?, ?)"
                " ON CONFLICT (org_id, tenant_id) DO UPDATE SET name = excluded.name,"
                " country_code = excluded.country_code, active = 1,"
                " linked_at = excluded.linked_at, checked_at = excluded.checked_at,"
                " source = excluded.source",
                (org_id, tenant_id, name, country_code, tenant.linked_at, now, source),
            )
            if old is None or _facts(old) != _facts(tenant):
                await execute(conn, _BUMP)
        return tenant

    async def unlink(self, org_id: str, tenant_id: str, now: float) -> None:
        """Mark a tenant inactive (its row is kept); NotFoundError if it was never linked.

        Unlinking an inactive tenant changes nothing.
        """
        async with self._db.transaction() as conn:
            row = await query_one(
                conn,
                "SELECT active FROM tenants WHERE org_id = ? AND tenant_id = ?",
                (org_id, tenant_id),
            )
            if row is None:
                raise NotFoundError(
                    f"organisation {org_id!r} has no tenant {tenant_id!r} linked to it"
                )
            if row["active"]:
                await execute(
                    conn,
                    "UPDATE tenants SET active = 0, checked_at = ?"
                    " WHERE org_id = ? AND tenant_id = ?",
                    (now, org_id, tenant_id),
                )
                await execute(conn, _BUMP)

    async def for_org(self, org_id: str) -> list[Tenant]:
        """The organisation's tenants, active or not, in the order they were first linked."""
        rows = await self._db.fetch_all(f"{_SELECT} WHERE org_id = ? ORDER BY rowid", (org_id,))
        return [_tenant(row) for row in rows]

    async def all(self) -> list[Tenant]:
        """Every tenant of every organisation, active or not, in the order first linked."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY rowid")
        return [_tenant(row) for row in rows]

    async def facts_version(self) -> int:
        """The facts version: 0 for a new database, one more after every tenant change."""
        row = await self._db.fetch_one("SELECT version FROM facts_version WHERE id = 1")
        if row is None:  # pragma: no cover - seeded by the migration
            raise StoreError("the facts version is missing from the database")
        return int(row[0])
