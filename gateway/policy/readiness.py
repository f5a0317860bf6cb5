"""Who will be blocked at each deadline: a pure count per policy and organisation, for admins."""

from __future__ import annotations

from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gateway.policy import Facts, Policy, Subject, applicable

NO_FACTS = Facts(tenants=())
JUST_AFTER = timedelta(microseconds=1)


@dataclass(frozen=True, kw_only=True)
class OrgReadiness:
    org_id: str
    in_scope: int
    enrolled: int
    blocked_at_deadline: int


@dataclass(frozen=True, kw_only=True)
class PolicyReadiness:
    policy_id: str
    enabled: bool
    deadline: datetime
    in_scope: int
    enrolled: int
    blocked_at_deadline: int
    orgs: tuple[OrgReadiness, ...]


def readiness(
    policies: Sequence[Policy],
    users: Iterable[tuple[str, str, str]],
    facts: Mapping[str, Facts],
    enrolled: Container[str],
    at: datetime,
) -> list[PolicyReadiness]:
    """For each policy: users (id, org, role) it covers just after its deadline, how many have
    2FA set up, and how many would be blocked then; only organisations with users in scope.

    ``at`` stands in for "now" when judging enablement: a disabled policy is reported with
    zeros. Users are grouped by (organisation, role) first, so the policy check runs once per
    group, not once per user.
    """
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    groups: Counter[tuple[str, str]] = Counter()
    enrolled_groups: Counter[tuple[str, str]] = Counter()
    for user_id, org_id, role in users:
        groups[(org_id, role)] += 1
        if user_id in enrolled:
            enrolled_groups[(org_id, role)] += 1
    report = []
    for policy in policies:
        when = max(at, policy.deadline + JUST_AFTER).astimezone(UTC)
        per_org: dict[str, list[int]] = {}
        if policy.enabled:
            for (org_id, role), count in groups.items():
                subject = Subject(user_id="", org_id=org_id, role=role)
                if applicable([policy], subject, facts.get(org_id, NO_FACTS), when):
                    tally = per_org.setdefault(org_id, [0, 0])
                    tally[0] += count
                    tally[1] += enrolled_groups[(org_id, role)]
        orgs = tuple(
            OrgReadiness(
                org_id=org_id,
                in_scope=scoped,
                enrolled=done,
                blocked_at_deadline=scoped - done,
            )
            for org_id, (scoped, done) in sorted(per_org.items())
        )
        report.append(
            PolicyReadiness(
                policy_id=policy.id,
                enabled=policy.enabled,
                deadline=policy.deadline,
                in_scope=sum(o.in_scope for o in orgs),
                enrolled=sum(o.enrolled for o in orgs),
                blocked_at_deadline=sum(o.blocked_at_deadline for o in orgs),
                orgs=orgs,
            )
        )
    return report
