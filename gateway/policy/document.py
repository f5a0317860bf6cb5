"""Policy documents: TOML text or JSON-shaped dicts in, Policy out, every problem at once.

Nothing here reads a file; gateway.enforcement.policy_files does, and hands the text to
:func:`parse_policy_text`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from gateway.errors import GatewayError
from gateway.policy.fields import FIELDS, by_table, load_zone
from gateway.policy.model import Policy


class PolicyError(GatewayError):
    """A policy is invalid; ``problems`` holds one line per bad field, each naming its path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


_TOP_KEYS = {f.path for f in FIELDS if f.table is None}
_TABLES = by_table()

Problem = tuple[str, str]  # (field path, what is wrong)


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
            known = {f.key for f in table_fields}
            for key in raw:
                if key not in known:
                    problems.append((f"{name}.{key}", "unknown key"))

    values: dict[str, Any] = {}
    for f in FIELDS:
        if f.table is not None:
            if f.table not in tables:
                continue  # the table itself is already reported
            source = tables[f.table]
            present = f.key in source
            if not present and f.required and data.get(f.table) is None:
                continue  # reported once, as the missing table
        else:
            source = data
            present = f.key in source
        if not present:
            if f.required:
                problems.append((f.path, "missing (it is required)"))
            else:
                values[f.name] = f.default
            continue
        value, problem = f.read(source[f.key])
        if problem is not None:
            problems.append((f.path, problem))
            continue
        if f.kind != "instant":  # a plain date is placed in time below, then checked
            found = f.problems(value)
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
    """The canonical JSON-able document of a policy; ``parse_policy`` turns it back unchanged.

    Every field is written, in FIELDS order, except an absent limit (no dismissal cap), whose
    table stays, empty.
    """
    document: dict[str, Any] = {}
    for f in FIELDS:
        value = getattr(policy, f.name)
        target = document if f.table is None else document.setdefault(f.table, {})
        if value is None and f.nullable:
            continue
        target[f.key] = f.write(value)
    return document


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


def line_of(path: str, lines: Mapping[str, int]) -> int | None:
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
        number = line_of(field_path, lines)
        where = f"{name}:{number}" if number is not None else name
        located.append(f"{where}: {field_path}: {message}")
    raise PolicyError(located)
