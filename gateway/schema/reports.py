"""The admin API's report bodies: a decision explained, readiness, and the audit trail."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from gateway.policy import MfaHeader, Outcome
from gateway.schema.instants import Instant
from gateway.schema.organisations import TenantFact

ScopeCode = Literal[
    "in-scope",
    "disabled",
    "not-announced",
    "role-not-covered",
    "no-active-tenant-in-countries",
    "invalid",
]


class ScopeSource(BaseModel):
    """An active tenant whose country a policy covers: where a scope decision came from."""

    tenant_id: str
    name: str
    country_code: str
    source: str = Field(
        description="'xero': read from Xero through a connection; 'manual': an admin's link.",
        json_schema_extra={"enum": ["manual", "xero"]},
    )
    grant_id: str | None = Field(description="The Xero consent (null for a manual link).")
    connection_id: str | None = Field(description="Xero's connection id (null for manual).")


class PolicyScope(BaseModel):
    """Whether one policy applies: ``code`` for programs, ``why`` for people; ``came_from``
    the organisation's active tenants in the policy's countries."""

    policy_id: str
    enabled: bool
    applies: bool
    code: ScopeCode
    why: str
    came_from: list[ScopeSource] = Field(default_factory=list)


class ExplainedUser(BaseModel):
    id: str
    email: str
    role: str
    org_id: str
    org_name: str | None
    disabled: bool


class AssumedSession(BaseModel):
    """The session assumed: fresh, with the user's stored dismissals."""

    mfa_verified: bool
    dismissed: bool
    dismissals: int


class OrgFacts(BaseModel):
    tenants: list[TenantFact]


class EffectiveRules(BaseModel):
    """The strictest combination of the policies that apply."""

    policy_ids: list[str]
    deadline: Instant
    timezone: str
    primary_methods: list[str]
    backup_methods: list[str]
    backup_required_for: list[str]
    max_dismissals: int | None


class Explanation(BaseModel):
    """What the gateway decides for a user at an instant, and why."""

    user: ExplainedUser
    at: Instant
    session: AssumedSession
    outcome: Outcome
    reason: str
    policy_ids: list[str]
    deadline: Instant | None
    days_left: int | None
    dismissals_left: int | None
    mfa_header: MfaHeader
    effective: EffectiveRules | None
    facts: OrgFacts
    policies: list[PolicyScope]


class OrgReadiness(BaseModel):
    org_id: str
    org_name: str | None
    in_scope: int
    enrolled: int
    blocked_at_deadline: int
    came_from: list[ScopeSource] = Field(
        default_factory=list,
        description="The organisation's active tenants in the policy's countries.",
    )


class PolicyReadiness(BaseModel):
    policy_id: str
    enabled: bool
    deadline: Instant
    in_scope: int
    enrolled: int
    blocked_at_deadline: int
    orgs: list[OrgReadiness]


class Readiness(BaseModel):
    """Per policy and organisation: users in scope, enrolled, blocked at the deadline."""

    at: Instant
    policies: list[PolicyReadiness]


class AuditEventBody(BaseModel):
    id: int
    at: Instant
    kind: str
    actor: str | None
    subject: str | None
    org_id: str | None
    client_addr: str | None
    detail: dict[str, Any]


class AuditPage(BaseModel):
    events: list[AuditEventBody]
    more: bool = Field(description="More events match: ask again with since = the last one's at.")
