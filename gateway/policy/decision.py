"""Who must use 2FA and by when: a pure judgement of policies, facts and time, with no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import Enum
from typing import Literal

from gateway.policy.model import Policy

MfaHeader = Literal["verified", "grace", "not-required"]


class Outcome(Enum):
    """What the gateway does with a request.

    Strictness, loosest first: ALLOW (let through), PROMPT (ask, may be dismissed),
    VERIFY (pass the second factor already set up), ENROL (no way on without setting 2FA up).
    For a user who has not enrolled only ALLOW < PROMPT < ENROL arise; VERIFY depends on the
    user's enrolment and session alone, never on policies or time.
    """

    ALLOW = "allow"
    PROMPT = "prompt"
    VERIFY = "verify"
    ENROL = "enrol"

    @property
    def strictness(self) -> int:
        return _STRICTNESS[self]


_STRICTNESS = {Outcome.ALLOW: 0, Outcome.PROMPT: 1, Outcome.VERIFY: 2, Outcome.ENROL: 3}


@dataclass(frozen=True, kw_only=True)
class Subject:
    """The signed-in user: ``role`` is "principal" or "member" (any other role is out of scope)."""

    user_id: str
    org_id: str
    role: str


@dataclass(frozen=True, kw_only=True)
class Enrolment:
    """The user's 2FA set-up: ``methods`` are the methods set up (e.g. "totp", "sms")."""

    enrolled: bool
    has_backup: bool
    methods: frozenset[str]

    def __post_init__(self) -> None:
        if self.enrolled and not self.methods:
            raise ValueError("An enrolled user has at least one method; methods is empty.")


@dataclass(frozen=True, kw_only=True)
class TenantFact:
    """One Xero tenant the organisation connected: ``country`` is Organisation.CountryCode."""

    tenant_id: str
    country: str
    active: bool


@dataclass(frozen=True, kw_only=True)
class Facts:
    """What is known about the user's organisation."""

    tenants: tuple[TenantFact, ...]


@dataclass(frozen=True, kw_only=True)
class SessionState:
    """``dismissed``: the prompt was dismissed in this session; ``dismissals``: the user's total
    so far (server-side, including a dismissal in this session)."""

    mfa_verified: bool
    dismissed: bool
    dismissals: int

    def __post_init__(self) -> None:
        if self.dismissals < 0:
            raise ValueError("The number of dismissals cannot be negative.")


@dataclass(frozen=True, kw_only=True)
class EffectivePolicy:
    """The strictest reading of every policy that applies to one user at one time."""

    policy_ids: tuple[str, ...]
    compliance_profiles: frozenset[str]
    announce: datetime
    deadline: datetime  # in the time zone of the policy it came from
    timezone: str
    primary_methods: frozenset[str]  # may be empty when policies share no method
    backup_methods: frozenset[str]
    backup_required_for: frozenset[str]
    max_dismissals: int | None  # None: no cap
    code_lifetime: timedelta
    step_lifetime: timedelta
    remember_device: timedelta
    service_refresh_window: timedelta
    max_failed_attempts: int
    lockout: timedelta


@dataclass(frozen=True, kw_only=True)
class Decision:
    outcome: Outcome
    policy_ids: tuple[str, ...]
    reason: str
    deadline: datetime | None  # set when the user falls short of a policy in force
    dismissals_left: int | None  # None: no cap, or nothing to dismiss
    mfa_header: MfaHeader
    effective: EffectivePolicy | None
    days_left: int | None = None  # whole days to the deadline, rounded up, while before it


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")


def combine(policies: Sequence[Policy]) -> EffectivePolicy:
    """Strictest wins: earliest dates, shortest windows, smallest caps and limits, longest
    lockout, only the methods every policy accepts, and a backup for any role one requires.

    The result does not depend on the order of ``policies``.
    """
    if not policies:
        raise ValueError("combine needs at least one policy")
    # Instants compare in UTC: two datetimes sharing a tzinfo compare by wall time, which
    # misorders them in the repeated hour when daylight saving ends.
    first_due = min(policies, key=lambda p: (p.deadline.astimezone(UTC), p.id, p.timezone))
    caps = [p.max_dismissals for p in policies if p.max_dismissals is not None]
    return EffectivePolicy(
        policy_ids=tuple(sorted({p.id for p in policies})),
        compliance_profiles=frozenset(p.compliance_profile for p in policies),
        announce=min((p.announce for p in policies), key=lambda a: a.astimezone(UTC)),
        deadline=first_due.deadline,
        timezone=first_due.timezone,
        primary_methods=frozenset.intersection(*(p.primary_methods for p in policies)),
        backup_methods=frozenset.intersection(*(p.backup_methods for p in policies)),
        backup_required_for=frozenset.union(*(p.backup_required_for for p in policies)),
        max_dismissals=min(caps) if caps else None,
        code_lifetime=min(p.code_lifetime for p in policies),
        step_lifetime=min(p.step_lifetime for p in policies),
        remember_device=min(p.remember_device for p in policies),
        service_refresh_window=min(p.service_refresh_window for p in policies),
        max_failed_attempts=min(p.max_failed_attempts for p in policies),
        lockout=max(p.lockout for p in policies),
    )


def _applies(policy: Policy, subject: Subject, facts: Facts, now: datetime) -> bool:
    # ``now`` is in UTC, so comparing it with the policy's zoned instants compares instants.
    if not policy.enabled or now < policy.announce or subject.role not in policy.roles:
        return False
    active = [t for t in facts.tenants if t.active]
    if any(t.country.strip().upper() in policy.countries for t in active):
        return True
    return not policy.requires_xero_connection and not active


def applicable(
    policies: Sequence[Policy], subject: Subject, facts: Facts, now: datetime
) -> list[Policy]:
    """The policies in force for ``subject`` at ``now``, in the order given."""
    _require_aware(now)
    now = now.astimezone(UTC)
    return [p for p in policies if _applies(p, subject, facts, now)]


def _naming(ids: tuple[str, ...]) -> str:
    return f"policy {ids[0]}" if len(ids) == 1 else f"policies {', '.join(ids)}"


def _verb(ids: tuple[str, ...], singular: str) -> str:
    return singular if len(ids) == 1 else singular.removesuffix("s")


def deadline_words(deadline: datetime, zone: str) -> str:
    """The deadline as people read it: "the end of 31 December 2026, Australia/Sydney time"."""
    day = f"{deadline.day} {deadline:%B %Y}"
    if (deadline + timedelta(microseconds=1)).time() == time():
        return f"the end of {day}, {zone} time"
    return f"{deadline:%H:%M} on {day}, {zone} time"


def _shortfall(effective: EffectivePolicy, subject: Subject, enrolment: Enrolment) -> str | None:
    """What the user still has to do for the policies in force, or None if nothing."""
    if not effective.primary_methods:
        return (
            "set up two-factor authentication, but the policies in force share no accepted"
            " method (ask your administrator)"
        )
    accepted = " or ".join(sorted(effective.primary_methods))
    if not enrolment.enrolled:
        return f"set up two-factor authentication ({accepted})"
    if not enrolment.methods & effective.primary_methods:
        return f"set up an accepted two-factor method ({accepted})"
    if subject.role in effective.backup_required_for and not enrolment.has_backup:
        backups = " or ".join(sorted(effective.backup_methods)) or "none allowed"
        return f"add a backup method ({backups}), which a {subject.role} needs"
    return None


def decide(
    policies: Sequence[Policy],
    subject: Subject,
    enrolment: Enrolment,
    facts: Facts,
    session: SessionState,
    now: datetime,
) -> Decision:
    """Judge one request: let it through, prompt for 2FA set-up, ask for the second factor,
    or require set-up. Pure: everything it needs is passed in, ``now`` included.
    """
    _require_aware(now)
    now = now.astimezone(UTC)  # so that comparing and subtracting zoned instants is exact
    in_force = applicable(policies, subject, facts, now)
    effective = combine(in_force) if in_force else None
    ids = effective.policy_ids if effective is not None else ()
    passed: MfaHeader = "verified" if session.mfa_verified else "not-required"

    if enrolment.enrolled and not session.mfa_verified:
        return Decision(
            outcome=Outcome.VERIFY,
            policy_ids=ids,
            reason="Two-factor authentication is set up for this account; confirm it to go on.",
            deadline=None,
            dismissals_left=None,
            mfa_header="not-required",
            effective=effective,
        )
    if effective is None:
        reason = (
            "Two-factor authentication was confirmed in this session."
            if session.mfa_verified
            else "No two-factor policy applies to this account."
        )
        return Decision(
            outcome=Outcome.ALLOW,
            policy_ids=(),
            reason=reason,
            deadline=None,
            dismissals_left=None,
            mfa_header=passed,
            effective=None,
        )
    todo = _shortfall(effective, subject, enrolment)
    if todo is None:
        return Decision(
            outcome=Outcome.ALLOW,
            policy_ids=ids,
            reason=f"Two-factor authentication meets {_naming(ids)}.",
            deadline=None,
            dismissals_left=None,
            mfa_header=passed,
            effective=effective,
        )

    deadline = effective.deadline
    when = deadline_words(deadline, effective.timezone)
    if now > deadline:
        return Decision(
            outcome=Outcome.ENROL,
            policy_ids=ids,
            reason=f"The deadline of {_naming(ids)} ({when}) has passed. To go on, {todo}.",
            deadline=deadline,
            dismissals_left=0,
            mfa_header=passed,
            effective=effective,
        )

    days_left = math.ceil((deadline - now) / timedelta(days=1))
    days = {0: "no time", 1: "1 day"}.get(days_left, f"{days_left} days")
    cap = effective.max_dismissals
    # A dismissal in this session is counted even if the total has not caught up with it.
    used = max(session.dismissals, 1 if session.dismissed else 0)
    if session.dismissed and (cap is None or used <= cap):
        return Decision(
            outcome=Outcome.ALLOW,
            policy_ids=ids,
            reason=f"Reminder dismissed for this session. By {when} ({days} left), {todo}.",
            deadline=deadline,
            dismissals_left=None if cap is None else cap - used,
            mfa_header="verified" if session.mfa_verified else "grace",
            effective=effective,
            days_left=days_left,
        )
    if cap is not None and used >= cap:
        times = "once" if cap == 1 else f"{cap} times"
        limit = "cannot be dismissed" if cap == 0 else f"can be dismissed only {times}"
        return Decision(
            outcome=Outcome.ENROL,
            policy_ids=ids,
            reason=f"The reminder of {_naming(ids)} {limit}. To go on, {todo}.",
            deadline=deadline,
            dismissals_left=0,
            mfa_header=passed,
            effective=effective,
            days_left=days_left,
        )
    return Decision(
        outcome=Outcome.PROMPT,
        policy_ids=ids,
        reason=f"By {when} ({days} left), {_naming(ids)} {_verb(ids, 'requires')} you to {todo}.",
        deadline=deadline,
        dismissals_left=None if cap is None else cap - used,
        mfa_header=passed,
        effective=effective,
        days_left=days_left,
    )
