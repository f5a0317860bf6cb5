"""What reminders are due: a pure judgement of policies, users, claims and time, with no I/O.

Reminder points are read in the policy's time zone: the point "N days before" is 09:00 local
time on the day N calendar days before the deadline's local day (09:00 exists on every day,
daylight saving or not, and is a decent hour for an email). A user gets the reminder of a
point once it has come, while the deadline has not passed, when the policy applies to them
and they have not set up 2FA. Of the points that have come, only the latest is sent: a
gateway that was down across several points sends one reminder, not a burst of stale ones.
A user covered by several policies is reminded of the one whose deadline comes first, and
of none once any deadline in force has passed (the blocked page takes over).

Principals get a summary of their organisation's members on Mondays from 09:00 (in the time
zone of the organisation's first deadline), one per ISO week, while someone in scope there
has not set up 2FA before a deadline that has not passed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from gateway.policy import Facts, Policy, Subject, applicable
from gateway.policy.reminder_points import SEND_AT, days_left, point_name, point_time, zone_of
from gateway.store.reminders import Claim, ClaimKey

SUMMARY_WEEKDAY = 0  # Monday, as date.weekday() counts
NO_FACTS = Facts(tenants=())


@dataclass(frozen=True, kw_only=True)
class Recipient:
    """A user as reminders see them: enabled accounts only (the shell leaves out the rest)."""

    user_id: str
    org_id: str
    role: str
    email: str
    name: str
    enrolled: bool


@dataclass(frozen=True, kw_only=True)
class ReminderDue:
    key: ClaimKey
    recipient: Recipient
    policy_id: str
    deadline: datetime  # in the policy's zone
    timezone: str
    days_left: int  # calendar days from today to the deadline's day, in the policy's zone
    retry: bool  # a failed send whose retry time has come (else a first send)


@dataclass(frozen=True, kw_only=True)
class TeamRow:
    name: str
    email: str
    enrolled: bool
    days_left: int | None  # None: no policy asks this member for 2FA; below 0: deadline passed


@dataclass(frozen=True, kw_only=True)
class SummaryDue:
    key: ClaimKey
    recipient: Recipient
    team: tuple[TeamRow, ...]
    deadline: datetime  # the organisation's first deadline in force
    timezone: str
    days_left: int
    retry: bool


def latest_point(policy: Policy, now: datetime) -> int | None:
    """The days of the latest point that has come by ``now`` while the deadline has not."""
    if now > policy.deadline:
        return None
    come = [d for d in policy.reminder_days if point_time(policy, d) <= now]
    return min(come) if come else None


def _wanted(key: ClaimKey, claims: Mapping[ClaimKey, Claim], now: datetime) -> bool | None:
    """None: not to send; False: a first send; True: a retry whose time has come."""
    claim = claims.get(key)
    if claim is None:
        return False
    due = claim.retry_at is not None and claim.retry_at <= now.timestamp()
    return True if claim.status == "failed" and due else None


def _first_due(in_force: Sequence[Policy]) -> Policy:
    return min(in_force, key=lambda p: (p.deadline.astimezone(UTC), p.id))


def _in_force(
    policies: Sequence[Policy], user: Recipient, facts: Mapping[str, Facts], now: datetime
) -> list[Policy]:
    subject = Subject(user_id=user.user_id, org_id=user.org_id, role=user.role)
    return applicable(policies, subject, facts.get(user.org_id, NO_FACTS), now)


def _open(in_force: Sequence[Policy], now: datetime) -> Policy | None:
    """The policy to remind of: the first deadline, unless a deadline in force has passed."""
    if not in_force or any(now > p.deadline for p in in_force):
        return None
    return _first_due(in_force)


@dataclass(frozen=True, kw_only=True)
class State:
    """What the rules judge: the policies, the enabled users, the organisations' tenant facts
    and the claims already made (sent, failed or under way)."""

    policies: Sequence[Policy]
    users: Sequence[Recipient]
    facts: Mapping[str, Facts]
    claims: Mapping[ClaimKey, Claim]


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    return now.astimezone(UTC)


def due(state: State, now: datetime) -> list[ReminderDue | SummaryDue]:
    """Every email to send at ``now`` (aware): reminders, then weekly summaries."""
    return [*due_reminders(state, now), *due_summaries(state, now)]


def due_reminders(state: State, now: datetime) -> list[ReminderDue]:
    """The reminders to send at ``now`` (aware), given the claims already made."""
    now = _utc(now)
    policies, facts, claims = state.policies, state.facts, state.claims
    found = []
    for user in state.users:
        if user.enrolled:
            continue
        policy = _open(_in_force(policies, user, facts, now), now)
        if policy is None:
            continue
        days = latest_point(policy, now)
        if days is None:
            continue
        key = ClaimKey(
            kind="reminder",
            recipient_id=user.user_id,
            policy_id=policy.id,
            point=point_name(policy, days),
        )
        retry = _wanted(key, claims, now)
        if retry is None:
            continue
        found.append(
            ReminderDue(
                key=key,
                recipient=user,
                policy_id=policy.id,
                deadline=policy.deadline,
                timezone=policy.timezone,
                days_left=days_left(policy, now),
                retry=retry,
            )
        )
    return found


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def due_summaries(state: State, now: datetime) -> list[SummaryDue]:
    """The weekly summaries to send to principals at ``now`` (aware)."""
    now = _utc(now)
    policies, facts, claims = state.policies, state.facts, state.claims
    by_org: dict[str, list[Recipient]] = {}
    for user in state.users:
        by_org.setdefault(user.org_id, []).append(user)
    found = []
    for members in by_org.values():
        rows = []
        open_policies: list[Policy] = []
        behind = False
        for user in sorted(members, key=lambda u: (u.name.casefold(), u.email)):
            in_force = _in_force(policies, user, facts, now)
            policy = _open(in_force, now)
            if policy is not None:
                open_policies.append(policy)
                behind = behind or not user.enrolled
            left = days_left(_first_due(in_force), now) if in_force else None
            row = TeamRow(name=user.name, email=user.email, enrolled=user.enrolled, days_left=left)
            rows.append(row)
        if not behind:
            continue
        first = _first_due(open_policies)
        local = now.astimezone(zone_of(first))
        monday = local.date() - timedelta(days=local.weekday() - SUMMARY_WEEKDAY)
        starts = datetime.combine(monday, SEND_AT, tzinfo=zone_of(first))
        if now < starts.astimezone(UTC):
            continue
        for principal in members:
            if principal.role != "principal":
                continue
            key = ClaimKey(
                kind="summary", recipient_id=principal.user_id, policy_id="", point=iso_week(monday)
            )
            retry = _wanted(key, claims, now)
            if retry is None:
                continue
            found.append(
                SummaryDue(
                    key=key,
                    recipient=principal,
                    team=tuple(rows),
                    deadline=first.deadline,
                    timezone=first.timezone,
                    days_left=days_left(first, now),
                    retry=retry,
                )
            )
    return found
