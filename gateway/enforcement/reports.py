"""Admin reports read from the store: readiness per policy and organisation at a given instant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gateway.enforcement.policy_files import facts_by_org, stored_policies
from gateway.policy import Policy
from gateway.policy.readiness import PolicyReadiness, readiness
from gateway.store import Store


async def readiness_report(
    store: Store, at: datetime, in_force: Mapping[str, Policy] | None = None
) -> list[PolicyReadiness]:
    """Readiness under the policies enforced from the store; a stored policy that no longer
    parses is reported by its version in ``in_force`` (a running gateway's), as it is enforced."""
    users = await store.users.list_all_light()
    facts = facts_by_org(await store.tenants.all())
    # Nobody can have a second factor until enrolment ships, so no user counts as enrolled.
    enrolled: frozenset[str] = frozenset()
    return readiness(await stored_policies(store, in_force), users, facts, enrolled, at)
