"""Admin API handlers for organisations and the Xero tenants linked to them."""

from __future__ import annotations

from aiohttp import web

from gateway.accounts import tenancy
from gateway.admin.http import (
    Call,
    instant,
    json_response,
    not_found,
    page_params,
    query_text,
    read_body,
    unprocessable,
)
from gateway.errors import NotFoundError
from gateway.schema.organisations import Org, OrgList, Tenant, TenantChange, TenantLink
from gateway.services import Services
from gateway.store import Tenant as StoredTenant
from gateway.store import TenantChange as StoredChange
from gateway.store import tenant_document


def tenant_body(tenant: StoredTenant) -> Tenant:
    # The shape the audit trail records too, checked against the model.
    return Tenant.model_validate(tenant_document(tenant))


async def search_orgs(services: Services, text: str, *, limit: int, offset: int) -> OrgList:
    """One page of the organisations whose name contains ``text``, with their enabled users
    and tenants."""
    store = services.store
    found = await store.organisations.search(text, limit=limit + 1, offset=offset)
    page = found[:limit]
    users = await store.users.count_by_org()
    return OrgList(
        orgs=[
            Org(
                id=org.id,
                name=org.name,
                created_at=instant(org.created_at),
                users=users.get(org.id, 0),
                tenants=[tenant_body(t) for t in await store.tenants.for_org(org.id)],
            )
            for org in page
        ],
        more=len(found) > limit,
        next_offset=offset + len(page),
    )


async def list_orgs(call: Call) -> web.StreamResponse:
    limit, offset = page_params(call.request)
    text = query_text(call.request, "q")
    return json_response(await search_orgs(call.services, text, limit=limit, offset=offset))


_invalid_tenant = unprocessable("tenant-invalid", "The tenant is invalid", "tenant")


def _change(org_id: str, change: StoredChange) -> TenantChange:
    return TenantChange(org_id=org_id, changed=change.changed, tenant=tenant_body(change.after))


async def link_tenant(call: Call) -> web.StreamResponse:
    org_id = call.path("org_id")
    # Checked as linking checks it (TenantLink runs tenancy's checks), every problem at once.
    link = await read_body(call.request, TenantLink, _invalid_tenant)
    try:
        change = await tenancy.link_tenant(
            call.services.store,
            org_id=org_id,
            tenant_id=link.tenant_id,
            name=link.name,
            country_code=link.country_code,
            now=call.now,
            audit=call.audit,
        )
    except tenancy.TenantLinkError as exc:  # pragma: no cover - TenantLink checks the same
        raise _invalid_tenant([f"{field}: {message}" for field, message in exc.problems]) from None
    except NotFoundError:
        raise not_found("org-not-found", f"There is no organisation {org_id!r}.") from None
    if change.changed:  # confirming a link as it stands is no change, and was not audited
        await call.refresh()
    return json_response(_change(org_id, change), status=201 if change.created else 200)


async def unlink_tenant(call: Call) -> web.StreamResponse:
    org_id, tenant_id = call.path("org_id"), call.path("tenant_id")
    try:
        change = await tenancy.unlink_tenant(
            call.services.store, org_id=org_id, tenant_id=tenant_id, now=call.now, audit=call.audit
        )
    except NotFoundError:
        raise not_found(
            "tenant-not-found", f"Organisation {org_id!r} has no tenant {tenant_id!r}."
        ) from None
    if change.changed:
        await call.refresh()
    return json_response(_change(org_id, change))
