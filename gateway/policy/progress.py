"""Enrolment over time, pure: who a policy covers and how many of them had 2FA each day."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.policy import Facts, Policy, Subject, applicable
from gateway.policy.readiness import JUST_AFTER, NO_FACTS

MAX_DAYS = 366


@dataclass(frozen=True, kw_only=True)
class DayCount:
    """How many of the users counted had confirmed a second factor by the end of ``day``."""

    day: dt.date
    enrolled: int


def in_scope_users(
    policy: Policy,
    users: Iterable[tuple[str, str, str]],
    facts: Mapping[str, Facts],
    at: dt.datetime,
) -> list[str]:
    """The ids of the users (id, org, role) ``policy`` covers just after its deadline, as the
    readiness report counts them (none while it is disabled)."""
    if at.tzinfo is None:
        raise ValueError("at must be an aware datetime")
    when = max(at, policy.deadline + JUST_AFTER).astimezone(dt.UTC)
    covered: dict[tuple[str, str], bool] = {}
    found = []
    for user_id, org_id, role in users:
        key = (org_id, role)
        if key not in covered:
            subject = Subject(user_id="", org_id=org_id, role=role)
            covered[key] = bool(applicable([policy], subject, facts.get(org_id, NO_FACTS), when))
        if covered[key]:
            found.append(user_id)
    return found


def enrolment_by_day(
    confirmed_at: Iterable[float], *, last_day: dt.date, days: int, zone: str
) -> list[DayCount]:
    """For each of the ``days`` days ending with ``last_day`` (dates in ``zone``), how many
    of ``confirmed_at`` (Unix seconds, one per user) fall before that day's end there."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, not {days}")
    tz = ZoneInfo(zone)
    local_days = sorted(dt.datetime.fromtimestamp(t, tz).date() for t in confirmed_at)
    first = last_day - dt.timedelta(days=days - 1)
    series = []
    count = 0
    index = 0
    for offset in range(days):
        day = first + dt.timedelta(days=offset)
        while index < len(local_days) and local_days[index] <= day:
            count += 1
            index += 1
        series.append(DayCount(day=day, enrolled=count))
    return series


def days_left(deadline: dt.datetime, at: dt.datetime, zone: str) -> int:
    """Whole days from ``at`` to ``deadline`` by the calendar in ``zone``; 0 once it is past."""
    tz = ZoneInfo(zone)
    if at >= deadline:
        return 0
    return max(0, (deadline.astimezone(tz).date() - at.astimezone(tz).date()).days)
