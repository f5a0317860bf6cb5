"""The fields of a policy, declared once: where each sits in a document, its kind, its limits.

Everything else is derived from :data:`FIELDS`: the checks a Policy makes of itself, how the
document parser reads each value and how a document is written back, the JSON Schema of a
policy document (gateway.schema) and the README's table of fields (a test keeps it in step).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.policy.countries import COUNTRY_CODES

PROFILES = frozenset({"ato-dsp-osf", "none"})
ROLES = frozenset({"principal", "member"})
PRIMARY_METHODS = frozenset({"totp", "sms"})
BACKUP_METHODS = frozenset({"sms", "email"})

SLUG = "[a-z0-9][a-z0-9-]{0,63}"
_SLUG = re.compile(SLUG)
DURATION = "([0-9]{1,9})([smhd])"
_DURATION = re.compile(DURATION)
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_UNITS["s"] = timedelta(seconds=1)
DURATION_HELP = 'use a number and a unit (s, m, h, d), e.g. "10m"'
_PLAIN_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

# How a value is written in a document, and so how it is read, checked and described:
#   slug      a string of lower-case letters, digits and hyphens
#   text      any string
#   flag      true or false
#   count     a whole number, at least ``minimum`` (or null, if ``nullable``)
#   choice    one of ``choices``
#   names     a list of distinct ``choices``
#   instant   a plain date or a date-time with an offset
#   zone      an IANA time zone name
#   duration  a whole number and a unit: "90s", "10m", "23h", "30d"
#   days      a list of distinct whole numbers of days, each from ``minimum`` to ``maximum``
Kind = Literal[
    "slug", "text", "flag", "count", "choice", "names", "instant", "zone", "duration", "days"
]
STRING_KINDS = frozenset({"slug", "text", "choice", "zone"})


def load_zone(name: str) -> ZoneInfo | None:
    """The IANA time zone called ``name``, or None when there is no such zone here."""
    if not name or name != name.strip():
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def parse_duration(value: object) -> timedelta | None:
    """``"90s"``, ``"10m"``, ``"23h"``, ``"30d"`` as a timedelta; None if it is not one."""
    if not isinstance(value, str):
        return None
    match = _DURATION.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(value: timedelta) -> str:
    """A whole-second timedelta in the largest unit that divides it: 600s is "10m"."""
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _country_hint(code: str) -> str:
    return f" (codes are upper case: {code.upper()!r})" if code.upper() in COUNTRY_CODES else ""


def _list_hint(allowed: frozenset[str]) -> Callable[[str], str]:
    return lambda _item: f" (use {' or '.join(sorted(allowed))})"


@dataclass(frozen=True, kw_only=True)
class PolicyField:
    """One field: ``path`` in the document (``schedule.deadline``), ``name`` on Policy."""

    path: str
    name: str
    kind: Kind
    description: str  # as the README's table of fields has it
    required: bool = True
    default: Any = None
    nullable: bool = False
    minimum: int | None = None
    maximum: int | None = None
    choices: frozenset[str] = frozenset()
    noun: str = ""  # what one of the names is called in a problem: "role", "method"
    at_least_one: bool = False
    hint: Callable[[str], str] | None = None  # advice after an unknown name

    @property
    def table(self) -> str | None:
        """The document table the field sits in (``schedule``), None at the top level."""
        return self.path.split(".", 1)[0] if "." in self.path else None

    @property
    def key(self) -> str:
        """The field's key within its table."""
        return self.path.rsplit(".", 1)[-1]

    def problems(self, value: Any) -> list[str]:
        """What is wrong with a value of the Policy field, as phrases to put after its name."""
        if self.kind == "slug":
            if _SLUG.fullmatch(value):
                return []
            return [
                "must be a slug: 1 to 64 lower-case letters, digits and hyphens,"
                " not starting with a hyphen"
            ]
        if self.kind == "count":
            if value is None and self.nullable:
                return []
            low = self.minimum
            return [] if low is None or value >= low else [f"must be at least {low}"]
        if self.kind == "choice":
            if value in self.choices:
                return []
            return [f"must be {' or '.join(repr(c) for c in sorted(self.choices))}"]
        if self.kind == "names":
            return self._name_problems(value)
        if self.kind == "days":
            return self._day_problems(value)
        if self.kind == "instant":
            if value.tzinfo is not None and value.utcoffset() is not None:
                return []
            return ["must carry a time zone offset"]
        if self.kind == "zone":
            if load_zone(value) is not None:
                return []
            return [
                f"unknown time zone {value!r}: use an IANA name such as 'Australia/Sydney'"
                " (is the tz database installed?)"
            ]
        if self.kind == "duration":
            if value <= timedelta(0):
                return ["must be longer than zero"]
            if value % timedelta(seconds=1):
                return ["must be a whole number of seconds"]
        return []

    def _name_problems(self, values: Iterable[str]) -> list[str]:
        items = list(values)
        problems = [] if items or not self.at_least_one else ["must name at least one"]
        for item in sorted(set(items) - self.choices):
            extra = self.hint(item) if self.hint is not None else ""
            problems.append(f"unknown {self.noun} {item!r}{extra}")
        return problems

    def _day_problems(self, values: Iterable[int]) -> list[str]:
        low, high = self.minimum or 0, self.maximum
        wrong = [v for v in values if v < low or (high is not None and v > high)]
        if not wrong:
            return []
        return [f"{wrong[0]} is out of range: use whole days from {low} to {high}"]

    def read(self, value: object) -> tuple[Any, str | None]:
        """A document's value as the Policy field takes it, or the problem with its type.

        Instants come back as a date or an aware datetime: a plain date is placed in time
        with the policy's zone, which the document parser does.
        """
        kind = self.kind
        if kind in STRING_KINDS:
            return value, None if isinstance(value, str) else "must be a string"
        if kind == "flag":
            return value, None if isinstance(value, bool) else "must be true or false"
        if kind == "count":
            if self.nullable and value is None:
                return None, None
            whole = isinstance(value, int) and not isinstance(value, bool)
            return value, None if whole else "must be a whole number"
        if kind == "names":
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return value, "must be a list of strings"
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                return value, f"{twice[0]!r} is listed more than once"
            return frozenset(value), None
        if kind == "days":
            whole = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value
            )
            if not whole:
                return value, "must be a list of whole numbers of days, e.g. [14, 7, 1]"
            assert isinstance(value, list)
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                return value, f"{twice[0]} is listed more than once"
            return tuple(sorted(value, reverse=True)), None
        if kind == "duration":
            parsed = parse_duration(value)
            return parsed, None if parsed is not None else DURATION_HELP
        read = _instant_value(value)
        return (None, read) if isinstance(read, str) else (read, None)

    def write(self, value: Any) -> Any:
        """The Policy field's value as the canonical document writes it."""
        if self.kind == "names":
            return sorted(value)
        if self.kind == "days":
            return sorted(value, reverse=True)
        if self.kind == "duration":
            return format_duration(value)
        if self.kind == "instant":
            return value.isoformat()
        return value


def _instant_value(value: object) -> date | datetime | str:
    """A schedule value as a date or an aware datetime, or the problem with it."""
    if isinstance(value, str):
        text = value.strip()
        try:
            if _PLAIN_DATE.fullmatch(text):
                value = date.fromisoformat(text)
            else:
                value = datetime.fromisoformat(text)
        except ValueError:
            return "not a date or date-time"
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            return (
                "a date-time needs an offset, e.g. 2026-12-31T17:00:00+11:00 (or give a plain date)"
            )
        return value
    if isinstance(value, date):
        return value
    return "not a date or date-time"


def _names(path: str, name: str, choices: frozenset[str], noun: str, **more: Any) -> PolicyField:
    more.setdefault("hint", _list_hint(choices))
    return PolicyField(path=path, name=name, kind="names", choices=choices, noun=noun, **more)


def _duration(path: str, name: str, description: str) -> PolicyField:
    return PolicyField(path=path, name=name, kind="duration", description=description)


FIELDS: tuple[PolicyField, ...] = (
    PolicyField(
        path="id",
        name="id",
        kind="slug",
        description="stable name: lower-case letters, digits and hyphens",
    ),
    PolicyField(
        path="version",
        name="version",
        kind="count",
        minimum=1,
        description="the author's version number of the rules"
        " (the store keeps its own revisions too)",
    ),
    PolicyField(
        path="description",
        name="description",
        kind="text",
        required=False,
        default="",
        description="one line for admins and the audit trail",
    ),
    PolicyField(
        path="enabled",
        name="enabled",
        kind="flag",
        description="`false` switches the policy off: nobody is prompted or blocked by it",
    ),
    PolicyField(
        path="compliance_profile",
        name="compliance_profile",
        kind="choice",
        choices=PROFILES,
        description="`ato-dsp-osf` holds the policy to the ATO framework in lint; `none` otherwise",
    ),
    _names(
        "scope.countries",
        "countries",
        COUNTRY_CODES,
        "country code",
        at_least_one=True,
        hint=_country_hint,
        description="ISO 3166-1 alpha-2 codes (Xero's `Organisation.CountryCode`)"
        " the policy covers",
    ),
    PolicyField(
        path="scope.requires_xero_connection",
        name="requires_xero_connection",
        kind="flag",
        description="`true`: only organisations with an active connection to such a tenant;"
        " `false`: also organisations with no active Xero connection",
    ),
    _names(
        "scope.roles",
        "roles",
        ROLES,
        "role",
        at_least_one=True,
        description="`principal` and/or `member`",
    ),
    PolicyField(
        path="schedule.announce",
        name="announce",
        kind="instant",
        description="from the start of this day (or this instant) in-scope users see the prompt",
    ),
    PolicyField(
        path="schedule.deadline",
        name="deadline",
        kind="instant",
        description="after the end of this day (or this instant) in-scope users without 2FA"
        " are blocked",
    ),
    PolicyField(
        path="schedule.timezone",
        name="timezone",
        kind="zone",
        description="IANA zone in which plain dates are read, e.g. `Australia/Sydney`",
    ),
    _names(
        "methods.primary",
        "primary_methods",
        PRIMARY_METHODS,
        "method",
        at_least_one=True,
        description="second factors a user may set up: `totp` (authenticator app), `sms`",
    ),
    _names(
        "methods.backup",
        "backup_methods",
        BACKUP_METHODS,
        "method",
        required=False,
        default=frozenset(),
        description="backup methods: `sms`, `email`",
    ),
    _names(
        "methods.backup_required_for",
        "backup_required_for",
        ROLES,
        "role",
        required=False,
        default=frozenset(),
        description="roles that must also set up a backup method",
    ),
    PolicyField(
        path="prompt.max_dismissals",
        name="max_dismissals",
        kind="count",
        minimum=0,
        nullable=True,
        required=False,
        description="how often *Remind me later* may be used; absent means no cap",
    ),
    _duration("windows.code_lifetime", "code_lifetime", "how long a sent code stays valid (`10m`)"),
    _duration(
        "windows.step_lifetime",
        "step_lifetime",
        "how long a started 2FA step may take before it starts over (`10m`)",
    ),
    _duration(
        "windows.remember_device",
        "remember_device",
        'how long "don\'t ask again on this device" lasts (under 24 h for the ATO profile)',
    ),
    _duration(
        "windows.service_refresh_window",
        "service_refresh_window",
        "how long after an MFA-verified use a background job may still refresh Xero tokens",
    ),
    PolicyField(
        path="attempts.max_failed",
        name="max_failed_attempts",
        kind="count",
        minimum=1,
        description="failed second-factor attempts before a lockout",
    ),
    _duration("attempts.lockout", "lockout", "how long that lockout lasts"),
    PolicyField(
        path="reminders.days_before",
        name="reminder_days",
        kind="days",
        minimum=0,
        maximum=365,
        required=False,
        default=(14, 7, 1),
        description="days before the deadline on which in-scope users without 2FA are emailed"
        " (at 09:00 in `schedule.timezone`; `[]` sends none; default `[14, 7, 1]`)",
    ),
)


def by_table() -> dict[str, list[PolicyField]]:
    """The document's tables in order (``scope``, ``schedule``...), each with its fields."""
    found: dict[str, list[PolicyField]] = {}
    for f in FIELDS:
        if f.table is not None:
            found.setdefault(f.table, []).append(f)
    return found
