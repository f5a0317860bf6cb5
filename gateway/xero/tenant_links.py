"""Tenant facts read from Xero, kept in the tenants table the policy engine reads.

A link an admin made by hand (``org link-tenant``, source 'manual') is an override: Xero's
facts never replace it, and disconnecting Xero never removes it. A link from Xero (source
'xero') ends when no active connection of the organisation reaches its tenant any more.
"""

from __future__ import annotations

from gateway.store import Store
from gateway.store.records import AuditEntry, Tenant
from gateway.xero.tenants import OrganisationFacts

XERO_SOURCE = "xero"


def _find(tenants: list[Tenant], tenant_id: str) -> Tenant | None:
    return next((t for t in tenants if t.tenant_id == tenant_id), None)


async def link_from_xero(
    store: Store, *, org_id: str, facts: OrganisationFacts, now: float, audit: AuditEntry
) -> bool:
    """Link (or update) the tenant with the facts Xero gave; False when a manual link is in
    force and was left alone. Audited in the change's transaction when anything changed."""
    current = _find(await store.tenants.for_org(org_id), facts.tenant_id)
    if current is not None and current.active and current.source != XERO_SOURCE:
        return False
    await store.tenants.link(
        org_id=org_id,
        tenant_id=facts.tenant_id,
        name=facts.name,
        country_code=facts.country_code,
        now=now,
        source=XERO_SOURCE,
        audit=audit,
    )
    return True


async def unlink_if_unreached(
    store: Store, *, org_id: str, tenant_id: str, now: float, audit: AuditEntry
) -> bool:
    """Unlink a tenant linked from Xero once no active connection of the organisation reaches
    it; True if it was unlinked."""
    current = _find(await store.tenants.for_org(org_id), tenant_id)
    if current is None or not current.active or current.source != XERO_SOURCE:
        return False
    if await store.xero.connection_for_tenant(org_id, tenant_id) is not None:
        return False
    change = await store.tenants.unlink(org_id, tenant_id, now, audit=audit)
    return change.changed
