"""Organisations and their Xero tenants, as the admin API and the CLI both change them.

One lookup of an organisation by name or id, and one way to link or unlink a tenant: checked
the same way, and audited by the store in the change's own transaction.
"""

from __future__ import annotations

from gateway.errors import NotFoundError, UsageError
from gateway.policy import COUNTRY_CODES
from gateway.store import AuditEntry, Organisation, Store, TenantChange

MAX_TENANT_ID = 128
MAX_TENANT_NAME = 200


class TenantLinkError(UsageError):
    """A link names something that cannot be a Xero tenant; ``problems`` is (field, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(f"{field}: {message}" for field, message in self.problems))


def text_problem(value: str, limit: int) -> str | None:
    """What is wrong with a tenant id or name, or None."""
    if not value.strip() or len(value) > limit or not value.isprintable():
        return f"must be 1 to {limit} printable characters"
    return None


def country_code_problem(value: object) -> str | None:
    """What is wrong with a country code, or None: strict on case, as Xero's CountryCode is."""
    if isinstance(value, str) and value in COUNTRY_CODES:
        return None
    hint = ""
    if isinstance(value, str) and value.strip().upper() in COUNTRY_CODES:
        hint = f" (codes are upper case: {value.strip().upper()!r})"
    return f"{value!r} is not an ISO 3166-1 alpha-2 country code{hint}"


def link_problems(*, tenant_id: str, name: str, country_code: str) -> list[tuple[str, str]]:
    """Every problem with a link, as (field, message), in field order."""
    found = (
        ("tenant_id", text_problem(tenant_id, MAX_TENANT_ID)),
        ("name", text_problem(name, MAX_TENANT_NAME)),
        ("country_code", country_code_problem(country_code)),
    )
    return [(field, message) for field, message in found if message is not None]


async def find_org(store: Store, name_or_id: str) -> Organisation:
    """The organisation with this name, else with this id; NotFoundError if neither."""
    org = await store.organisations.find_by_name(name_or_id)
    if org is not None:
        return org
    try:
        return await store.organisations.get(name_or_id)
    except NotFoundError:
        raise NotFoundError(f"no organisation has the name or id {name_or_id!r}") from None


async def link_tenant(
    store: Store,
    *,
    org_id: str,
    tenant_id: str,
    name: str,
    country_code: str,
    now: float,
    audit: AuditEntry,
) -> TenantChange:
    """Link a tenant to an organisation (or confirm or update the link), audited if it changed.

    TenantLinkError if the tenant id, name or country code is invalid; NotFoundError if the
    organisation does not exist. The result tells a new link (``created``) from a changed one
    and from a confirmation that changed nothing (and was not audited).
    """
    problems = link_problems(tenant_id=tenant_id, name=name, country_code=country_code)
    if problems:
        raise TenantLinkError(problems)
    return await store.tenants.link(
        org_id=org_id,
        tenant_id=tenant_id,
        name=name,
        country_code=country_code,
        now=now,
        audit=audit,
    )


async def unlink_tenant(
    store: Store, *, org_id: str, tenant_id: str, now: float, audit: AuditEntry
) -> TenantChange:
    """Mark a tenant's link inactive, audited if it was active; NotFoundError if never linked."""
    return await store.tenants.unlink(org_id, tenant_id, now, audit=audit)
