"""When a policy's reminder points come: N days before the deadline, at 09:00 local time.

The point "N days before" is 09:00 in the policy's time zone on the calendar day N days
before the deadline's local day: 09:00 exists on every day, daylight saving or not, so no
point moves or vanishes with a clock change, and it is a decent hour for an email.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from gateway.policy.model import Policy

SEND_AT = time(9)  # local time of day at which a point (or a week's summary) comes


def zone_of(policy: Policy) -> ZoneInfo:
    return ZoneInfo(policy.timezone)


def point_time(policy: Policy, days: int) -> datetime:
    """When the point "``days`` days before the deadline" comes, as an aware UTC datetime."""
    zone = zone_of(policy)
    day = policy.deadline.astimezone(zone).date() - timedelta(days=days)
    return datetime.combine(day, SEND_AT, tzinfo=zone).astimezone(UTC)


def days_left(policy: Policy, now: datetime) -> int:
    """Calendar days from ``now``'s day to the deadline's day, both in the policy's zone."""
    zone = zone_of(policy)
    return (policy.deadline.astimezone(zone).date() - now.astimezone(zone).date()).days


def point_name(policy: Policy, days: int) -> str:
    """The point's claim name: the days and the deadline's local day, so a moved deadline
    has points of its own ("7d-2026-12-31")."""
    return f"{days}d-{policy.deadline.astimezone(zone_of(policy)).date().isoformat()}"
