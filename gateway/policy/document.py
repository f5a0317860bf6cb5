"""Policy documents: TOML text or JSON-shaped dicts in, Policy out, every problem at once.

Nothing here reads a file; gateway.enforcement.policy_files does, and hands the text to
:func:`parse_policy_text`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gateway.errors import GatewayError
from gateway.policy.model import CHECKS, Policy, load_zone


class PolicyError(GatewayError):
    """A policy is invalid; ``problems`` holds one line per bad field, each naming its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class _Field:
    path: str  # where it sits in the document, e.g. "schedule.deadline"
    name: str  # the Policy field it fills
    kind: str  # how the document spells it: see _read
    required: bool = True
    default: Any = None


_FIELDS = (
    _Field("id", "id", "str"),
    _Field("version", "version", "int"),
    _Field("description", "description", "str", required=False, default=""),
    _Field("enabled", "enabled", "bool"),
    _Field("compliance_profile", "compliance_profile", "str"),
    _Field("scope.countries", "countries", "names"),
    _Field("scope.requires_xero_connection", "requires_xero_connection", "bool"),
    _Field("scope.roles", "roles", "names"),
    _Field("schedule.announce", "announce", "instant"),
    _Field("schedule.deadline", "deadline", "instant"),
    _Field("schedule.timezone", "timezone", "str"),
    _Field("methods.primary", "primary_methods", "names"),
    _Field("methods.backup", "backup_methods", "names", required=False, default=frozenset()),
    _Field(
        "methods.backup_required_for",
        "backup_required_for",
        "names",
        required=False,
        default=frozenset(),
    ),
    _Field("prompt.max_dismissals", "max_dismissals", "int-or-none", required=False),
    _Field("windows.code_lifetime", "code_lifetime", "duration"),
    _Field("windows.step_lifetime", "step_lifetime", "duration"),
    _Field("windows.remember_device", "remember_device", "duration"),
    _Field("windows.service_refresh_window", "service_refresh_window", "duration"),
    _Field("attempts.max_failed", "max_failed_attempts", "int"),
    _Field("attempts.lockout", "lockout", "duration"),
)

_TOP_KEYS = {f.path for f in _FIELDS if "." not in f.path}
_TABLES: dict[str, list[_Field]] = {}
for _f in _FIELDS:
    if "." in _f.path:
        _TABLES.setdefault(_f.path.split(".")[0], []).append(_f)

_DURATION = re.compile(r"([0-9]{1,9})([smhd])")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_UNITS["s"] = timedelta(seconds=1)
_DURATION_HELP = 'use a number and a unit (s, m, h, d), e.g. "10m"'
_PLAIN_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")

Problem = tuple[str, str]  # (field path, what is wrong)


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


def _read(kind: str, value: object) -> tuple[Any, str | None]:
    """Check a document value's type; return what the Policy field gets, or a problem."""
    if kind == "str":
        return value, None if isinstance(value, str) else "must be a string"
    if kind == "bool":
        return value, None if isinstance(value, bool) else "must be true or false"
    if kind in ("int", "int-or-none"):
        if kind == "int-or-none" and value is None:
            return None, None
        ok = isinstance(value, int) and not isinstance(value, bool)
        return value, None if ok else "must be a whole number"
    if kind == "names":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            return value, "must be a list of strings"
        twice = sorted({v for v in value if value.count(v) > 1})
        if twice:
            return value, f"{twice[0]!r} is listed more than once"
        return frozenset(value), None
    if kind == "duration":
        parsed = parse_duration(value)
        return parsed, None if parsed is not None else _DURATION_HELP
    if kind == "instant":
        read = _instant_value(value)
        return (None, read) if isinstance(read, str) else (read, None)
    raise AssertionError(f"unknown field kind {kind!r}")  # a programming error


def _to_instant(value: date | datetime, zone_name: str, *, end_of_day: bool) -> datetime | str:
    """An aware datetime as is; a plain date as the start, or the end, of that day in the zone."""
    if isinstance(value, datetime):
        return value
    zone = load_zone(zone_name)
    if zone is None:
        return "cannot be placed in time without a valid schedule.timezone"
    try:
        if end_of_day:
            next_day = datetime.combine(value + timedelta(days=1), time(), tzinfo=zone)
            return next_day.astimezone(UTC) - timedelta(microseconds=1)
        return datetime.combine(value, time(), tzinfo=zone)
    except OverflowError:
        return "is out of range"


def _plainly_after(announce: object, deadline: object) -> bool:
    """Whether announce is after the deadline as written, without a time zone to place them:
    two plain dates, or two date-times with offsets, compare; a mix cannot."""
    if isinstance(announce, datetime) and isinstance(deadline, datetime):
        return announce > deadline
    if isinstance(announce, datetime) or isinstance(deadline, datetime):
        return False
    return isinstance(announce, date) and isinstance(deadline, date) and announce > deadline


def _check(data: object) -> tuple[Policy | None, list[Problem]]:
    problems: list[Problem] = []
    if not isinstance(data, Mapping):
        return None, [("policy", "must be a table of keys")]
    for key in data:
        if key not in _TOP_KEYS and key not in _TABLES:
            problems.append((str(key), "unknown key"))
    tables: dict[str, Mapping[str, Any]] = {}
    for name, table_fields in _TABLES.items():
        raw = data.get(name)
        if raw is None:
            if any(f.required for f in table_fields):
                problems.append((name, f"missing (a [{name}] table is required)"))
            tables[name] = {}
        elif not isinstance(raw, Mapping):
            problems.append((name, f"must be a table ([{name}])"))
        else:
            tables[name] = raw
            known = {f.path.split(".", 1)[1] for f in table_fields}
            for key in raw:
                if key not in known:
                    problems.append((f"{name}.{key}", "unknown key"))

    values: dict[str, Any] = {}
    for f in _FIELDS:
        if "." in f.path:
            table, key = f.path.split(".", 1)
            if table not in tables:
                continue  # the table itself is already reported
            source = tables[table]
            present = key in source
            if not present and f.required and data.get(table) is None:
                continue  # reported once, as the missing table
        else:
            key, source = f.path, data
            present = key in source
        if not present:
            if f.required:
                problems.append((f.path, "missing (it is required)"))
            else:
                values[f.name] = f.default
            continue
        value, problem = _read(f.kind, source[key])
        if problem is not None:
            problems.append((f.path, problem))
            continue
        if f.kind != "instant":
            found = CHECKS[f.name](value)
            problems.extend((f.path, p) for p in found)
            if found:
                continue
        values[f.name] = value

    as_written = (values.get("announce"), values.get("deadline"))
    if "timezone" in values:
        for name, end_of_day in (("announce", False), ("deadline", True)):
            if name in values:
                instant = _to_instant(values[name], values["timezone"], end_of_day=end_of_day)
                if isinstance(instant, str):
                    problems.append((f"schedule.{name}", instant))
                    del values[name]
                else:
                    values[name] = instant
    else:
        values.pop("announce", None)
        values.pop("deadline", None)
    dates = [values[name].astimezone(UTC) for name in ("announce", "deadline") if name in values]
    # Not both placed in time (no valid zone): compare them as written, if they can be.
    after = dates[0] > dates[1] if len(dates) == 2 else _plainly_after(*as_written)
    if after:
        problems.append(("schedule.announce", "is after schedule.deadline"))

    if problems:
        return None, problems
    try:
        return Policy(**values), []
    except ValueError as exc:  # a backstop: the checks above should have caught it
        return None, [("policy", str(exc))]


def _lines(problems: list[Problem]) -> list[str]:
    return [f"{path}: {message}" for path, message in problems]


def parse_policy(data: Mapping[str, Any]) -> Policy:
    """Turn a policy document (parsed TOML or JSON) into a Policy, or raise PolicyError.

    Plain dates are read in ``schedule.timezone``: ``announce`` as the start of that day,
    ``deadline`` as its end (the instant the next day begins is past it).
    """
    policy, problems = _check(data)
    if policy is None:
        raise PolicyError(_lines(problems))
    return policy


def policy_to_document(policy: Policy) -> dict[str, Any]:
    """The canonical JSON-able document of a policy; ``parse_policy`` turns it back unchanged."""
    prompt: dict[str, Any] = {}
    if policy.max_dismissals is not None:
        prompt["max_dismissals"] = policy.max_dismissals
    return {
        "id": policy.id,
        "version": policy.version,
        "description": policy.description,
        "enabled": policy.enabled,
        "compliance_profile": policy.compliance_profile,
        "scope": {
            "countries": sorted(policy.countries),
            "requires_xero_connection": policy.requires_xero_connection,
            "roles": sorted(policy.roles),
        },
        "schedule": {
            "announce": policy.announce.isoformat(),
            "deadline": policy.deadline.isoformat(),
            "timezone": policy.timezone,
        },
        "methods": {
            "primary": sorted(policy.primary_methods),
            "backup": sorted(policy.backup_methods),
            "backup_required_for": sorted(policy.backup_required_for),
        },
        "prompt": prompt,
        "windows": {
            "code_lifetime": format_duration(policy.code_lifetime),
            "step_lifetime": format_duration(policy.step_lifetime),
            "remember_device": format_duration(policy.remember_device),
            "service_refresh_window": format_duration(policy.service_refresh_window),
        },
        "attempts": {
            "max_failed": policy.max_failed_attempts,
            "lockout": format_duration(policy.lockout),
        },
    }


# Finding the line of a key in TOML source: tomllib keeps no positions, so read the text.

_HEADER = re.compile(r"\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?")
_KEY = re.compile(
    r"""((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*="""
)
_PART = re.compile(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _key_parts(text: str) -> tuple[str, ...]:
    return tuple(part.strip("\"'") for part in _PART.findall(text))


def key_lines(source: str) -> dict[str, int]:
    """The line where each key or table of a TOML text is first written, by dotted path."""
    found: dict[str, int] = {}
    table: tuple[str, ...] = ()
    open_quote: str | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if open_quote is not None:  # inside a multi-line string
            if stripped.count(open_quote) % 2 == 1:
                open_quote = None
            continue
        header = _HEADER.fullmatch(stripped)
        if header is not None:
            table = _key_parts(header.group(1))
            found.setdefault(".".join(table), number)
            continue
        key = _KEY.match(stripped)
        if key is None:
            continue
        found.setdefault(".".join(table + _key_parts(key.group(1))), number)
        rest = stripped[key.end() :]
        for quote in ('"""', "'''"):
            if rest.count(quote) % 2 == 1:
                open_quote = quote
                break
    return found


def _line_of(path: str, lines: Mapping[str, int]) -> int | None:
    """The line of ``path``, else of the nearest table holding it (where a missing key goes)."""
    parts = path.split(".")
    while parts:
        number = lines.get(".".join(parts))
        if number is not None:
            return number
        parts.pop()
    return None


def parse_policy_text(text: str, name: str) -> Policy:
    """Check the TOML text of a policy; each problem starts with ``<name>:<line>:``.

    ``name`` says where the text came from (a file's path, say); nothing is read here.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is None:
            raise PolicyError([f"{name}: not valid TOML: {message}"]) from exc
        where = f"{name}:{position.group(1)}"
        detail = message[: position.start()]
        raise PolicyError(
            [f"{where}: not valid TOML: {detail} (column {position.group(2)})"]
        ) from exc
    policy, problems = _check(data)
    if policy is not None:
        return policy
    lines = key_lines(text)
    located = []
    for field_path, message in problems:
        number = _line_of(field_path, lines)
        where = f"{name}:{number}" if number is not None else name
        located.append(f"{where}: {field_path}: {message}")
    raise PolicyError(located)
