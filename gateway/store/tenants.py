"""Tenants: the Xero connections linked to each organisation, and the facts version over them."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from gateway.audit import TenantLinked, TenantUnlinked
from gateway.errors import NotFoundError, StoreError
from gateway.store.audit import record_change
from gateway.store.database import Database, Row, Transaction
from gateway.store.records import TENANT_SOURCES, AuditEntry, Tenant, TenantChange

_SELECT = (
    "SELECT org_id, tenant_id, name, country_code, active, linked_at, checked_at, source"
    " FROM tenants"
)
_BUMP = "UPDATE facts_version SET version = version + 1 WHERE id = 1"


def _tenant(row: Row) -> Tenant:
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


def _instant(value: float) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).isoformat()


def tenant_document(tenant: Tenant) -> dict[str, Any]:
    """A tenant link as JSON, times in ISO 8601 UTC: as audited, and as the admin API shows it."""
    return {
        "tenant_id": tenant.tenant_id,
        "name": tenant.name,
        "country_code": tenant.country_code,
        "active": tenant.active,
        "linked_at": _instant(tenant.linked_at),
        "checked_at": _instant(tenant.checked_at),
        "source": tenant.source,
    }


async def _row(tx: Transaction, org_id: str, tenant_id: str) -> Tenant | None:
    row = await tx.fetch_one(
        f"{_SELECT} WHERE org_id = :org_id AND tenant_id = :tenant_id",
        {"org_id": org_id, "tenant_id": tenant_id},
    )
    return _tenant(row) if row is not None else None


class TenantRepository:
    """Tenants linked to organisations, and the facts version.

    The facts version starts at 0 and goes up by one in the same transaction as any change to
    a tenant's facts (a new link, a changed name, country or source, an unlink, a relink), so
    anything computed from tenants can be cached against it. Confirming a link without changing
    it only moves ``checked_at`` and leaves the facts version alone.

    ``link`` and ``unlink`` take an optional ``audit``: given, a change's audit event
    (``org.tenant_linked`` or ``org.tenant_unlinked``, with the tenant ``before`` and ``after`` as
    the transaction saw it) is written in the change's own transaction; no change, no event.
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
        audit: AuditEntry | None = None,
    ) -> TenantChange:
        """Link a tenant to an organisation, or confirm and update an existing link.

        Relinking an unlinked tenant makes it active again with ``linked_at`` = ``now``; an
        active link keeps its ``linked_at``. ``checked_at`` is always ``now``. NotFoundError if
        the organisation does not exist; StoreError if ``source`` is not 'manual' or 'xero'.
        The result's ``before`` is None if the tenant was never linked to the organisation.
        """
        if source not in TENANT_SOURCES:
            raise StoreError(f"source must be one of {', '.join(TENANT_SOURCES)}, not {source!r}")
        async with self._db.transaction() as tx:
            if not await tx.fetch_one(
                "SELECT 1 AS found FROM organisations WHERE id = :id", {"id": org_id}
            ):
                raise NotFoundError(f"no organisation has id {org_id!r}")
            old = await _row(tx, org_id, tenant_id)
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
            await tx.execute(
                "INSERT INTO tenants (org_id, tenant_id, name, country_code, active, linked_at,"
                " checked_at, source, seq) VALUES (:org_id, :tenant_id, :name, :country_code, 1,"
                " :linked_at, :now, :source, (SELECT coalesce(max(seq), 0) + 1 FROM tenants))"
                " ON CONFLICT (org_id, tenant_id) DO UPDATE SET name = excluded.name,"
                " country_code = excluded.country_code, active = 1,"
                # An active link keeps its time even if another writer linked it meanwhile.
                " linked_at = CASE WHEN tenants.active = 1 THEN tenants.linked_at"
                " ELSE excluded.linked_at END, checked_at = excluded.checked_at,"
                " source = excluded.source",
                {
                    "org_id": org_id,
                    "tenant_id": tenant_id,
                    "name": name,
                    "country_code": country_code,
                    "linked_at": tenant.linked_at,
                    "now": now,
                    "source": source,
                },
            )
            change = TenantChange(before=old, after=tenant)
            if change.changed:
                await tx.execute(_BUMP)
                if audit is not None:
                    linked = TenantLinked(
                        tenant_id=tenant_id,
                        org_id=org_id,
                        before=tenant_document(old) if old is not None else None,
                        after=tenant_document(tenant),
                        name=tenant.name,
                        country_code=tenant.country_code,
                    )
                    await record_change(tx, audit, linked, at=now)
        return change

    async def unlink(
        self, org_id: str, tenant_id: str, now: float, *, audit: AuditEntry | None = None
    ) -> TenantChange:
        """Mark a tenant inactive (its row is kept); NotFoundError if it was never linked.

        Unlinking an inactive tenant changes nothing (``after`` is ``before``).
        """
        async with self._db.transaction() as tx:
            old = await _row(tx, org_id, tenant_id)
            if old is None:
                raise NotFoundError(
                    f"organisation {org_id!r} has no tenant {tenant_id!r} linked to it"
                )
            if not old.active:
                return TenantChange(before=old, after=old)
            await tx.execute(
                "UPDATE tenants SET active = 0, checked_at = :now"
                " WHERE org_id = :org_id AND tenant_id = :tenant_id",
                {"now": now, "org_id": org_id, "tenant_id": tenant_id},
            )
            await tx.execute(_BUMP)
            tenant = dataclasses.replace(old, active=False, checked_at=now)
            if audit is not None:
                unlinked = TenantUnlinked(
                    tenant_id=tenant_id,
                    org_id=org_id,
                    before=tenant_document(old),
                    after=tenant_document(tenant),
                )
                await record_change(tx, audit, unlinked, at=now)
        return TenantChange(before=old, after=tenant)

    async def for_org(self, org_id: str) -> list[Tenant]:
        """The organisation's tenants, active or not, in the order they were first linked."""
        rows = await self._db.fetch_all(
            f"{_SELECT} WHERE org_id = :org_id ORDER BY seq", {"org_id": org_id}
        )
        return [_tenant(row) for row in rows]

    async def all(self) -> list[Tenant]:
        """Every tenant of every organisation, active or not, in the order first linked."""
        rows = await self._db.fetch_all(f"{_SELECT} ORDER BY seq")
        return [_tenant(row) for row in rows]

    async def facts_version(self) -> int:
        """The facts version: 0 for a new database, one more after every tenant change."""
        row = await self._db.fetch_one("SELECT version FROM facts_version WHERE id = 1")
        if row is None:  # pragma: no cover - seeded by the migration
            raise StoreError("the facts version is missing from the database")
        return int(row["version"])
