"""Organisations and their Xero tenants, as the admin API and the CLI both look them up."""

from __future__ import annotations

from gateway.store import Organisation, Store


async def find_org(store: Store, name_or_id: str) -> Organisation:
    """The organisation with this name, else with this id; NotFoundError if neither."""
    org = await store.organisations.find_by_name(name_or_id)
    if org is None:
        org = await store.organisations.get(name_or_id)
    return org
