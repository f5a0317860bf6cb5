"""Reading connected tenants again on a schedule: what Xero lists now decides the scope.

For each active grant whose stored access token is still valid (a refresh needs an
MFA-verified session, so the schedule never refreshes), read the consent's connections and
each tenant's Organisation; only when every read succeeded is anything changed: a connection
Xero no longer lists is marked ``removed_at_xero`` and its tenant unlinked (unless another
connection reaches it); a tenant new to the store is added; a changed country or name updates
the tenants table. A Xero outage, or an expired access token, changes nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.audit import XeroConnectionRemoved
from gateway.store import Store
from gateway.store.records import AuditEntry
from gateway.store.xero import NewConnection, XeroGrant
from gateway.xero.connect import consent_tenants
from gateway.xero.tenant_links import link_from_xero, unlink_if_unreached
from gateway.xero.tenants import OrganisationFacts, TenantConnection, TenantReader
from gateway.xero.tokens import XeroError
from gateway.xero.vault import Vault

log = logging.getLogger(__name__)

RECHECK_ACTOR = "xero-recheck"


@dataclass(frozen=True, kw_only=True)
class Rechecked:
    """What one round found: grants read, skipped (token expired), failed (Xero), and the
    connections marked removed and tenants linked or updated."""

    read: int = 0
    skipped: int = 0
    failed: int = 0
    removed: tuple[str, ...] = ()
    linked: tuple[str, ...] = ()

    def __add__(self, other: Rechecked) -> Rechecked:
        return Rechecked(
            read=self.read + other.read,
            skipped=self.skipped + other.skipped,
            failed=self.failed + other.failed,
            removed=self.removed + other.removed,
            linked=self.linked + other.linked,
        )

    @property
    def changed(self) -> bool:
        return bool(self.removed or self.linked)


async def recheck_grant(
    store: Store, vault: Vault, reader: TenantReader, grant: XeroGrant, *, now: float
) -> Rechecked:
    """Read one grant's tenants from Xero again and bring the store in line."""
    if grant.status != "active":
        return Rechecked()
    tokens = vault.open(grant)
    if tokens.needs_refresh(now):
        return Rechecked(skipped=1)
    try:
        found = await reader.connections(tokens.access_token, auth_event_id=grant.auth_event_id)
        listed = consent_tenants(found, grant.auth_event_id)
        facts = [await reader.organisation(tokens.access_token, c.tenant_id) for c in listed]
    except XeroError as exc:
        log.warning("could not read grant %s's tenants from Xero: %s", grant.id, exc)
        return Rechecked(failed=1)
    return await _apply(store, grant, listed, facts, now=now)


async def _apply(
    store: Store,
    grant: XeroGrant,
    listed: list[TenantConnection],
    facts: list[OrganisationFacts],
    *,
    now: float,
) -> Rechecked:
    audit = AuditEntry(actor=RECHECK_ACTOR)
    stored = await store.xero.connections(grant.id)
    known = {c.id for c in stored}
    at_xero = {c.id.lower() for c in listed}
    removed = []
    for gone in stored:
        if gone.status == "active" and gone.id.lower() not in at_xero:
            if await store.xero.mark_removed_at_xero(gone.id, now=now):
                removed.append(gone.id)
                event = XeroConnectionRemoved(
                    connection_id=gone.id,
                    org_id=grant.org_id,
                    grant_id=grant.id,
                    tenant_id=gone.tenant_id,
                )
                await store.audit.record(event, at=now, actor=RECHECK_ACTOR)
            await unlink_if_unreached(
                store, org_id=grant.org_id, tenant_id=gone.tenant_id, now=now, audit=audit
            )
    linked = []
    for c, f in zip(listed, facts, strict=True):
        if c.id not in known:
            new = NewConnection(
                id=c.id, tenant_id=c.tenant_id, tenant_type=c.tenant_type, tenant_name=f.name
            )
            await store.xero.add_connection(grant.id, new, now=now)
        before = {t.tenant_id: t for t in await store.tenants.for_org(grant.org_id)}
        old = before.get(f.tenant_id)
        if await link_from_xero(store, org_id=grant.org_id, facts=f, now=now, audit=audit) and (
            old is None
            or not old.active
            or (old.country_code, old.name) != (f.country_code, f.name)
        ):
            linked.append(f.tenant_id)
    return Rechecked(read=1, removed=tuple(removed), linked=tuple(linked))


async def recheck_all(store: Store, vault: Vault, reader: TenantReader, *, now: float) -> Rechecked:
    """One round over every active grant."""
    total = Rechecked()
    for grant in await store.xero.active():
        total += await recheck_grant(store, vault, reader, grant, now=now)
    return total
