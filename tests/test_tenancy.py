"""Tests for organisation lookup and tenant linking, shared by the admin API and the CLI."""

from __future__ import annotations

import argparse

import pytest

from gateway.accounts.tenancy import (
    MAX_TENANT_ID,
    TenantLinkError,
    country_code_problem,
    find_org,
    link_problems,
    link_tenant,
    unlink_tenant,
)
from gateway.cli import policy as policy_cli
from gateway.errors import NotFoundError, UsageError
from gateway.store import AuditEntry, Organisation, Store, tenant_document

OPS = AuditEntry(actor="ops")


@pytest.fixture
async def org(store: Store) -> Organisation:
    return await store.organisations.add(name="Harbour", now=1.0)


async def test_an_organisation_is_found_by_name_then_by_id(store: Store, org: Organisation) -> None:
    assert await find_org(store, "Harbour") == org
    assert await find_org(store, org.id) == org
    with pytest.raises(NotFoundError, match="no organisation has the name or id 'Nowhere'"):
        await find_org(store, "Nowhere")


def test_link_problems_name_every_bad_field_in_order() -> None:
    assert link_problems(tenant_id="t", name="n", country_code="AU") == []
    assert link_problems(tenant_id=" ", name="x" * 201, country_code="au") == [
        ("tenant_id", f"must be 1 to {MAX_TENANT_ID} printable characters"),
        ("name", "must be 1 to 200 printable characters"),
        (
            "country_code",
            "'au' is not an ISO 3166-1 alpha-2 country code (codes are upper case: 'AU')",
        ),
    ]
    assert country_code_problem("XX") == "'XX' is not an ISO 3166-1 alpha-2 country code"
    assert country_code_problem(61) == "61 is not an ISO 3166-1 alpha-2 country code"


async def test_an_invalid_link_is_refused_before_the_store(store: Store, org: Organisation) -> None:
    with pytest.raises(TenantLinkError) as refused:
        await link_tenant(
            store, org_id=org.id, tenant_id="t", name="n", country_code="UK", now=2, audit=OPS
        )
    assert [field for field, _ in refused.value.problems] == ["country_code"]
    assert isinstance(refused.value, UsageError)
    assert await store.tenants.all() == []
    assert await store.audit.list() == []


async def test_link_relink_and_unlink_are_audited_only_when_they_change_something(
    store: Store, org: Organisation
) -> None:
    new = await link_tenant(
        store, org_id=org.id, tenant_id="t", name="n", country_code="AU", now=2, audit=OPS
    )
    same = await link_tenant(
        store, org_id=org.id, tenant_id="t", name="n", country_code="AU", now=3, audit=OPS
    )
    gone = await unlink_tenant(store, org_id=org.id, tenant_id="t", now=4, audit=OPS)
    again = await unlink_tenant(store, org_id=org.id, tenant_id="t", now=5, audit=OPS)
    assert [(c.created, c.changed) for c in (new, same, gone, again)] == [
        (True, True),
        (False, False),
        (False, True),
        (False, False),
    ]
    events = await store.audit.list()
    assert [e.kind for e in events] == ["org.tenant_linked", "org.tenant_unlinked"]
    assert events[0].detail["before"] is None
    assert events[1].detail["before"] == tenant_document(same.after)
    assert events[1].detail["after"] == tenant_document(gone.after)


# --- the CLI's link-tenant and unlink-tenant go the same way ------------------------------------


def _link_args(org: str, country: str = "au", name: str = "Harbour Pty") -> argparse.Namespace:
    return argparse.Namespace(org=org, tenant_id="t-au", name=name, country=country)


async def test_the_cli_audits_links_with_before_and_after_and_skips_a_no_op(
    store: Store, org: Organisation, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await policy_cli._link(_link_args("Harbour"), store) == 0  # any case on the CLI
    assert await policy_cli._link(_link_args(org.id), store) == 0  # the same link again
    assert await policy_cli._link(_link_args("Harbour", name="Harbour Group"), store) == 0
    unlink = argparse.Namespace(org="Harbour", tenant_id="t-au")
    assert await policy_cli._unlink(unlink, store) == 0
    assert await policy_cli._unlink(unlink, store) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"linked t-au (AU) to {org.id}",
        f"t-au (AU) was already linked to {org.id}",
        f"linked t-au (AU) to {org.id}",
        f"unlinked t-au from {org.id}",
        f"t-au was already unlinked from {org.id}",
    ]
    events = await store.audit.list()
    assert [(e.kind, e.actor, e.subject, e.org_id) for e in events] == [
        ("org.tenant_linked", "cli", "t-au", org.id),
        ("org.tenant_linked", "cli", "t-au", org.id),
        ("org.tenant_unlinked", "cli", "t-au", org.id),
    ]
    first, renamed, unlinked = (e.detail for e in events)
    assert (first["before"], first["after"]["country_code"]) == (None, "AU")
    assert (renamed["before"]["name"], renamed["after"]["name"]) == ("Harbour Pty", "Harbour Group")
    assert (unlinked["before"]["active"], unlinked["after"]["active"]) == (True, False)


async def test_the_cli_names_its_own_flags_when_a_link_is_invalid(
    store: Store, org: Organisation
) -> None:
    with pytest.raises(UsageError, match=r"--country 'XX' is not an ISO 3166-1 alpha-2 code"):
        await policy_cli._link(_link_args("Harbour", country="XX"), store)
    with pytest.raises(UsageError, match=r"--name: must be 1 to 200 printable characters"):
        await policy_cli._link(_link_args("Harbour", name=""), store)
    assert await store.tenants.all() == []
    assert await store.audit.list() == []
