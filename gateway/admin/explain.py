"""Why a user gets their decision: decide() for a fresh session, and each policy's scope."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.enforcement.decisions import NOT_ENROLLED
from gateway.enforcement.policy_files import StoredRead, facts_by_org
from gateway.policy import (
    Decision,
    Facts,
    Policy,
    SessionState,
    Subject,
    applicable,
    decide,
)
from gateway.store import Tenant, User


@dataclass(frozen=True, kw_only=True)
class Scope:
    """Whether one policy applies, as a stable ``code`` for programs and ``why`` for people."""

    policy_id: str
    enabled: bool
    applies: bool
    code: str
    why: str


def _countries(codes: Sequence[str] | frozenset[str]) -> str:
    return ", ".join(sorted(codes)) or "no country"


def scope(policy: Policy, subject: Subject, facts: Facts, at: dt.datetime) -> Scope:
    """Whether ``policy`` applies to ``subject`` at ``at``, and the first reason it does not.

    ``applicable`` decides; this only finds words for its answer, checking in the order it
    does, so the two cannot disagree.
    """
    applies = bool(applicable([policy], subject, facts, at))
    active = sorted({t.country.strip().upper() for t in facts.tenants if t.active})

    def result(code: str, why: str) -> Scope:
        return Scope(
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


def _decision(decision: Decision) -> dict[str, Any]:
    effective = decision.effective
    return {
        "outcome": decision.outcome.value,
        "reason": decision.reason,
        "policy_ids": list(decision.policy_ids),
        "deadline": decision.deadline.isoformat() if decision.deadline else None,
        "days_left": decision.days_left,
        "dismissals_left": decision.dismissals_left,
        "mfa_header": decision.mfa_header,
        "effective": None
        if effective is None
        else {
            "policy_ids": list(effective.policy_ids),
            "deadline": effective.deadline.isoformat(),
            "timezone": effective.timezone,
            "primary_methods": sorted(effective.primary_methods),
            "backup_methods": sorted(effective.backup_methods),
            "backup_required_for": sorted(effective.backup_required_for),
            "max_dismissals": effective.max_dismissals,
        },
    }


def explain(
    *,
    user: User,
    org_name: str | None,
    tenants: Sequence[Tenant],
    candidates: Sequence[StoredRead],
    dismissals: int,
    at: dt.datetime,
) -> dict[str, Any]:
    """What ``decide`` says for ``user`` at ``at`` in a fresh session, and why (JSON-ready).

    A fresh session has neither confirmed 2FA nor dismissed the prompt; the user's stored
    dismissal count still counts against any cap. Nobody is enrolled until enrolment ships.
    ``candidates`` are the stored policies as enforcement reads them, so a stored document that
    no longer parses is explained by the version kept in force, as the gateway enforces it.
    """
    subject = Subject(user_id=user.id, org_id=user.org_id, role=user.role)
    facts = facts_by_org(t for t in tenants if t.org_id == user.org_id).get(
        user.org_id, Facts(tenants=())
    )
    policies = [c.policy for c in candidates if c.policy is not None]
    session = SessionState(mfa_verified=False, dismissed=False, dismissals=dismissals)
    decision = decide(policies, subject, NOT_ENROLLED, facts, session, at)
    scopes: list[dict[str, Any]] = []
    for candidate in candidates:
        if candidate.policy is None:
            scopes.append(
                {
                    "policy_id": candidate.id,
                    "enabled": candidate.enabled,
                    "applies": False,
                    "code": "invalid",
                    "why": "the stored document no longer parses: " + "; ".join(candidate.problems),
                }
            )
            continue
        found = scope(candidate.policy, subject, facts, at)
        why = found.why
        if candidate.problems:
            why += "; the stored document no longer parses, so the version in force stands: "
            why += "; ".join(candidate.problems)
        scopes.append(
            {
                "policy_id": found.policy_id,
                "enabled": found.enabled,
                "applies": found.applies,
                "code": found.code,
                "why": why,
            }
        )
    return {
        "user": {
            "id": user.id,
            "email": user.email,
            "role": user.role,
            "org_id": user.org_id,
            "org_name": org_name,
            "disabled": user.disabled,
        },
        "at": at.astimezone(dt.UTC).isoformat(),
        "session": {"mfa_verified": False, "dismissed": False, "dismissals": dismissals},
        **_decision(decision),
        "facts": {
            "tenants": [
                {
                    "tenant_id": t.tenant_id,
                    "name": t.name,
                    "country_code": t.country_code,
                    "active": t.active,
                }
                for t in tenants
            ]
        },
        "policies": scopes,
    }
