"""Admin reports read from the store: readiness per policy and organisation at a given instant."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from gateway.enforcement.policy_files import facts_by_org, stored_policies
from gateway.policy import Policy
from gateway.policy.readiness import PolicyReadiness, readiness
from gateway.store import Store


async def readiness_report(
    store: Store, at: datetime, in_force: Mapping[str, Policy] | None = None
) -> list[PolicyReadiness]:
    """Readiness under the policies enforced from the store at ``at``.

    A stored policy that no longer parses is reported by its version in ``in_force`` (a
    running gateway's), as it is enforced. A naive ``at`` (a date or time given without an
    offset) is read in each policy's own time zone, as the policy files read their plain dates.
    """
    users = await store.users.list_all_light()
    facts = facts_by_org(await store.tenants.all())
    enrolled = await store.factors.enrolled_user_ids()
    policies = await stored_policies(store, in_force)
    if at.tzinfo is not None:
        return readiness(policies, users, facts, enrolled, at)
    by_zone: dict[str, list[Policy]] = {}
    for policy in policies:
        by_zone.setdefault(policy.timezone, []).append(policy)
    reports: dict[str, PolicyReadiness] = {}
    for zone, group in by_zone.items():
        local = at.replace(tzinfo=ZoneInfo(zone))
        reports.update((r.policy_id, r) for r in readiness(group, users, facts, enrolled, local))
    return [reports[policy.id] for policy in policies]
