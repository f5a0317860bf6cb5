"""Audit events of policies and the Xero tenants linked to organisations."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.event import Document, Event

# Policies: every change carries the documents before and after, and the new revision.


@dataclass(frozen=True, kw_only=True)
class PolicyChanged(Event):
    subject_field = "policy_id"
    policy_id: str
    before: Document | None
    after: Document | None
    version: int


@dataclass(frozen=True, kw_only=True)
class PolicyCreated(PolicyChanged):
    kind = "policy.created"


@dataclass(frozen=True, kw_only=True)
class PolicyReplaced(PolicyChanged):
    kind = "policy.replaced"


@dataclass(frozen=True, kw_only=True)
class PolicyEnabled(PolicyChanged):
    kind = "policy.enabled"


@dataclass(frozen=True, kw_only=True)
class PolicyDisabled(PolicyChanged):
    kind = "policy.disabled"


@dataclass(frozen=True, kw_only=True)
class PolicyDeleted(PolicyChanged):
    kind = "policy.deleted"


# Xero tenants linked to organisations


@dataclass(frozen=True, kw_only=True)
class TenantLinked(Event):
    kind = "org.tenant_linked"
    subject_field = "tenant_id"
    tenant_id: str
    org_id: str
    before: Document | None
    after: Document
    name: str
    country_code: str


@dataclass(frozen=True, kw_only=True)
class TenantUnlinked(Event):
    kind = "org.tenant_unlinked"
    subject_field = "tenant_id"
    tenant_id: str
    org_id: str
    before: Document
    after: Document
