"""What a 2FA policy is: a frozen, self-checking record of who must use 2FA, how, and by when."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from gateway.policy.fields import FIELDS, load_zone


@dataclass(frozen=True, kw_only=True)
class Policy:
    """One 2FA policy, checked on construction.

    Scope: the policy applies to a user whose role is in ``roles`` once ``announce`` has come,
    when the user's organisation has an active Xero connection to a tenant in ``countries``.
    With ``requires_xero_connection`` false it also applies to organisations with no active
    Xero connection at all (their country is unknown, so the policy errs on the strict side).

    ``announce`` and ``deadline`` are instants, kept at the offset the policy's ``timezone`` has
    at that instant (a fixed offset, so they compare exactly) so that messages show local time.
    The deadline is the last instant that is still in time.
    """

    id: str
    version: int
    description: str
    enabled: bool
    compliance_profile: str
    countries: frozenset[str]
    requires_xero_connection: bool
    roles: frozenset[str]
    announce: datetime
    deadline: datetime
    timezone: str
    primary_methods: frozenset[str]
    backup_methods: frozenset[str]
    backup_required_for: frozenset[str]
    max_dismissals: int | None
    code_lifetime: timedelta
    step_lifetime: timedelta
    remember_device: timedelta
    service_refresh_window: timedelta
    max_failed_attempts: int
    lockout: timedelta
    # Reminder emails this many days before the deadline, largest first (policy.fields).
    reminder_days: tuple[int, ...] = (14, 7, 1)

    def __post_init__(self) -> None:
        problems = [
            f"{f.name} {problem}" for f in FIELDS for problem in f.problems(getattr(self, f.name))
        ]
        # In UTC: datetimes sharing a tzinfo compare by wall time, wrong in a repeated hour.
        if not problems and self.announce.astimezone(UTC) > self.deadline.astimezone(UTC):
            problems.append("announce must not be after the deadline")
        if problems:
            raise ValueError(f"Invalid policy {self.id!r}: {'; '.join(problems)}.")
        zone = load_zone(self.timezone)
        object.__setattr__(self, "announce", _local(self.announce, zone))
        object.__setattr__(self, "deadline", _local(self.deadline, zone))


def _local(instant: datetime, zone: ZoneInfo | None) -> datetime:
    """The same instant at the zone's offset then, as a fixed offset.

    Going through UTC resolves wall times that do not exist or happen twice; a fixed offset
    makes equality, hashing and ordering exact (datetimes that share a ZoneInfo compare by wall
    time, which goes wrong in the hour that repeats when daylight saving ends).
    """
    local = instant.astimezone(UTC).astimezone(zone)
    return local.replace(tzinfo=timezone(local.utcoffset() or timedelta(0)))


# Every attribute is a declared field and every declared field an attribute: they cannot drift.
if {f.name for f in fields(Policy)} != {f.name for f in FIELDS}:  # pragma: no cover
    raise AssertionError("Policy's attributes and gateway.policy.fields.FIELDS differ")
