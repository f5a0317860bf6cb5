"""Why a user gets their decision: decide() for a fresh session, and each policy's scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from gateway.enforcement.policy_files import StoredRead, facts_by_org
from gateway.policy import (
    EffectivePolicy,
    Enrolment,
    Facts,
    Policy,
    SessionState,
    Subject,
    applicable,
    decide,
)
from gateway.schema.organisations import TenantFact
from gateway.schema.reports import (
    AssumedSession,
    EffectiveRules,
    ExplainedUser,
    Explanation,
    OrgFacts,
    PolicyScope,
    ScopeCode,
    ScopeSource,
)
from gateway.store import Tenant, User
from gateway.store.xero import XeroConnection


def scope_sources(
    countries: frozenset[str], tenants: Sequence[Tenant], connections: Sequence[XeroConnection]
) -> list[ScopeSource]:
    """The active tenants in ``countries``, each with the Xero connection it was read through
    (none for a manual link): where a scope decision came from."""
    live = {
        (c.org_id, c.tenant_id): c
        for c in sorted(connections, key=lambda c: c.created_at)
        if c.status == "active"
    }
    found = []
    for t in tenants:
        if not t.active or t.country_code.strip().upper() not in countries:
            continue
        connection = live.get((t.org_id, t.tenant_id)) if t.source == "xero" else None
        found.append(
            ScopeSource(
                tenant_id=t.tenant_id,
                name=t.name,
                country_code=t.country_code,
                source=t.source,
                grant_id=connection.grant_id if connection is not None else None,
                connection_id=connection.id if connection is not None else None,
            )
        )
    return found


def _countries(codes: Sequence[str] | frozenset[str]) -> str:
    return ", ".join(sorted(codes)) or "no country"


def scope(policy: Policy, subject: Subject, facts: Facts, at: dt.datetime) -> PolicyScope:
    """Whether ``policy`` applies to ``subject`` at ``at``, and the first reason it does not.

    ``applicable`` decides; this only finds words for its answer, checking in the order it
    does, so the two cannot disagree.
    """
    applies = bool(applicable([policy], subject, facts, at))
    active = sorted({t.country.strip().upper() for t in facts.tenants if t.active})

    def result(code: ScopeCode, why: str) -> PolicyScope:
        return PolicyScope(
            policy_id=policy.id, enabled=policy.enabled, applies=applies, code=code, why=why
        )

    if applies:
        matching = sorted(set(active) & policy.countries)
        if matching:
            return result("in-scope", f"the organisation has an active tenant in {matching[0]}")
        return result(
            "in-scope",
            "the organisation has no active Xero connection, and the policy covers such"
            " organisations (requires_xero_connection is false)",
        )
    if not policy.enabled:
        return result("disabled", "the policy is disabled")
    if at.astimezone(dt.UTC) < policy.announce:
        return result(
            "not-announced", f"not yet announced: it applies from {policy.announce.isoformat()}"
        )
    if subject.role not in policy.roles:
        return result(
            "role-not-covered",
            f"role {subject.role!r} is not covered (it covers {', '.join(sorted(policy.roles))})",
        )
    elsewhere = (
        f"the organisation's active tenants are in {_countries(active)}"
        if active
        else "the organisation has no active Xero connection"
    )
    return result(
        "no-active-tenant-in-countries",
        f"no active tenant in {_countries(policy.countries)}; {elsewhere}",
    )


def _effective(effective: EffectivePolicy | None) -> EffectiveRules | None:
    if effective is None:
        return None
    return EffectiveRules(
        policy_ids=list(effective.policy_ids),
        deadline=effective.deadline.isoformat(),
        timezone=effective.timezone,
        primary_methods=sorted(effective.primary_methods),
        backup_methods=sorted(effective.backup_methods),
        backup_required_for=sorted(effective.backup_required_for),
        max_dismissals=effective.max_dismissals,
    )


def _scope(candidate: StoredRead, subject: Subject, facts: Facts, at: dt.datetime) -> PolicyScope:
    if candidate.policy is None:
        return PolicyScope(
            policy_id=candidate.id,
            enabled=candidate.enabled,
            applies=False,
            code="invalid",
            why="the stored document no longer parses: " + "; ".join(candidate.problems),
        )
    found = scope(candidate.policy, subject, facts, at)
    if not candidate.problems:
        return found
    why = (
        f"{found.why}; the stored document no longer parses, so the version in force stands: "
        + "; ".join(candidate.problems)
    )
    return found.model_copy(update={"why": why})


def explain(
    *,
    user: User,
    org_name: str | None,
    tenants: Sequence[Tenant],
    candidates: Sequence[StoredRead],
    dismissals: int,
    enrolment: Enrolment,
    at: dt.datetime,
    connections: Sequence[XeroConnection] = (),
) -> Explanation:
    """What ``decide`` says for ``user`` at ``at`` in a fresh session, and why.

    A fresh session has neither confirmed 2FA nor dismissed the prompt; the user's stored
    dismissal count still counts against any cap, and its enrolled factors count as set up.
    ``candidates`` are the stored policies as enforcement reads them, so a stored document that
    no longer parses is explained by the version kept in force, as the gateway enforces it.
    ``connections`` are the organisation's Xero connections, to name where each scope came from.
    """
    subject = Subject(user_id=user.id, org_id=user.org_id, role=user.role)
    facts = facts_by_org(t for t in tenants if t.org_id == user.org_id).get(
        user.org_id, Facts(tenants=())
    )
    policies = [c.policy for c in candidates if c.policy is not None]
    session = SessionState(mfa_verified=False, dismissed=False, dismissals=dismissals)
    decision = decide(policies, subject, enrolment, facts, session, at)
    return Explanation(
        user=ExplainedUser(
            id=user.id,
            email=user.email,
            role=user.role,
            org_id=user.org_id,
            org_name=org_name,
            disabled=user.disabled,
        ),
        at=at.astimezone(dt.UTC).isoformat(),
        session=AssumedSession(mfa_verified=False, dismissed=False, dismissals=dismissals),
        outcome=decision.outcome,
        reason=decision.reason,
        policy_ids=list(decision.policy_ids),
        deadline=decision.deadline.isoformat() if decision.deadline else None,
        days_left=decision.days_left,
        dismissals_left=decision.dismissals_left,
        mfa_header=decision.mfa_header,
        effective=_effective(decision.effective),
        facts=OrgFacts(
            tenants=[
                TenantFact(
                    tenant_id=t.tenant_id, name=t.name, country_code=t.country_code, active=t.active
                )
                for t in tenants
            ]
        ),
        policies=[
            _scope(candidate, subject, facts, at).model_copy(
                update={
                    "came_from": scope_sources(candidate.policy.countries, tenants, connections)
                    if candidate.policy is not None
                    else []
                }
            )
            for candidate in candidates
        ],
    )
