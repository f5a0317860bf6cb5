"""What a 2FA policy is: a frozen, self-checking record of who must use 2FA, how, and by when."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.policy.countries import COUNTRY_CODES

PROFILES = frozenset({"ato-dsp-osf", "none"})
ROLES = frozenset({"principal", "member"})
PRIMARY_METHODS = frozenset({"totp", "sms"})
BACKUP_METHODS = frozenset({"sms", "email"})

_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def load_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone called ``name``, or None when there is no such zone here."""
    if not name or name != name.strip():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


# Checks of one value each, shared by Policy (ValueError) and the document parser (field paths).
# Each returns the problems as phrases to put after the field's name; none means the value is good.


def id_problems(value: str) -> list[str]:
    if _SLUG.fullmatch(value):
        return []
    return [
        "must be a slug: 1 to 64 lower-case letters, digits and hyphens, not starting with a hyphen"
    ]


def at_least(minimum: int) -> Callable[[int], list[str]]:
    def check(value: int) -> list[str]:
        return [] if value >= minimum else [f"must be at least {minimum}"]

    return check


def optional_at_least(minimum: int) -> Callable[[int | None], list[str]]:
    def check(value: int | None) -> list[str]:
        return [] if value is None or value >= minimum else [f"must be at least {minimum}"]

    return check


def profile_problems(value: str) -> list[str]:
    return [] if value in PROFILES else ["must be 'ato-dsp-osf' or 'none'"]


def members(
    allowed: frozenset[str], noun: str, *, required: bool, hint: Callable[[str], str] | None = None
) -> Callable[[Iterable[str]], list[str]]:
    """A check that every item is one of ``allowed`` (and, if ``required``, that there is one)."""

    def check(values: Iterable[str]) -> list[str]:
        items = list(values)
        problems = [] if items or not required else ["must name at least one"]
        for item in sorted(set(items) - allowed):
            extra = hint(item) if hint is not None else ""
            problems.append(f"unknown {noun} {item!r}{extra}")
        return problems

    return check


def _country_hint(code: str) -> str:
    return f" (codes are upper case: {code.upper()!r})" if code.upper() in COUNTRY_CODES else ""


def _method_hint(allowed: frozenset[str]) -> Callable[[str], str]:
    return lambda _item: f" (use {' or '.join(sorted(allowed))})"


def zone_problems(value: str) -> list[str]:
    if load_zone(value) is not None:
        return []
    return [
        f"unknown time zone {value!r}: use an IANA name such as 'Australia/Sydney'"
        " (is the tz database installed?)"
    ]


def aware_problems(value: datetime) -> list[str]:
    if value.tzinfo is not None and value.utcoffset() is not None:
        return []
    return ["must carry a time zone offset"]


def duration_problems(value: timedelta) -> list[str]:
    if value <= timedelta(0):
        return ["must be longer than zero"]
    if value % timedelta(seconds=1):
        return ["must be a whole number of seconds"]
    return []


def _nothing(_value: Any) -> list[str]:
    return []


CHECKS: dict[str, Callable[[Any], list[str]]] = {
    "id": id_problems,
    "version": at_least(1),
    "description": _nothing,
    "enabled": _nothing,
    "compliance_profile": profile_problems,
    "countries": members(COUNTRY_CODES, "country code", required=True, hint=_country_hint),
    "requires_xero_connection": _nothing,
    "roles": members(ROLES, "role", required=True, hint=_method_hint(ROLES)),
    "announce": aware_problems,
    "deadline": aware_problems,
    "timezone": zone_problems,
    "primary_methods": members(
        PRIMARY_METHODS, "method", required=True, hint=_method_hint(PRIMARY_METHODS)
    ),
    "backup_methods": members(
        BACKUP_METHODS, "method", required=False, hint=_method_hint(BACKUP_METHODS)
    ),
    "backup_required_for": members(ROLES, "role", required=False, hint=_method_hint(ROLES)),
    "max_dismissals": optional_at_least(0),
    "code_lifetime": duration_problems,
    "step_lifetime": duration_problems,
    "remember_device": duration_problems,
    "service_refresh_window": duration_problems,
    "max_failed_attempts": at_least(1),
    "lockout": duration_problems,
}


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

    def __post_init__(self) -> None:
        problems = [
            f"{f.name} {problem}"
            for f in fields(self)
            for problem in CHECKS[f.name](getattr(self, f.name))
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
