"""Policy documents: TOML and JSON in, every problem named by its path (and line), a faithful
round trip out."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.enforcement.policy_files import load_policy_file
from gateway.policy import (
    BACKUP_METHODS,
    COUNTRY_CODES,
    PRIMARY_METHODS,
    PROFILES,
    ROLES,
    Policy,
    PolicyError,
    format_duration,
    parse_duration,
    parse_policy,
    parse_policy_text,
    policy_to_document,
)
from gateway.policy.document import key_lines

SYDNEY = ZoneInfo("Australia/Sydney")

DOC: dict[str, Any] = {
    "id": "au-ato-2fa",
    "version": 1,
    "description": "2FA for Australian organisations",
    "enabled": True,
    "compliance_profile": "ato-dsp-osf",
    "scope": {"countries": ["AU"], "requires_xero_connection": True, "roles": ["principal"]},
    "schedule": {
        "announce": "2026-11-01",
        "deadline": "2026-12-31",
        "timezone": "Australia/Sydney",
    },
    "methods": {"primary": ["totp", "sms"], "backup": ["email"], "backup_required_for": []},
    "prompt": {"max_dismissals": 5},
    "windows": {
        "code_lifetime": "10m",
        "step_lifetime": "10m",
        "remember_device": "23h",
        "service_refresh_window": "8h",
    },
    "attempts": {"max_failed": 5, "lockout": "15m"},
}


def doc_with(**changes: Any) -> dict[str, Any]:
    """DOC with ``table__key=value`` changes; a value of ... removes the key."""
    doc = copy.deepcopy(DOC)
    for name, value in changes.items():
        table, _, key = name.rpartition("__")
        target = doc[table] if table else doc
        if value is ...:
            del target[key]
        else:
            target[key] = value
    return doc


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(doc)
    return info.value.problems


def test_a_json_document_becomes_a_policy() -> None:
    policy = parse_policy(DOC)
    assert policy.countries == frozenset({"AU"})
    assert policy.max_dismissals == 5
    assert policy.remember_device == timedelta(hours=23)
    assert policy.backup_methods == frozenset({"email"})


def test_a_plain_deadline_date_is_the_end_of_that_day_in_the_policy_zone() -> None:
    policy = parse_policy(DOC)
    assert policy.deadline == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY)
    assert policy.deadline + timedelta(microseconds=1) == datetime(2027, 1, 1, tzinfo=SYDNEY)


def test_a_plain_announce_date_is_the_start_of_that_day_in_the_policy_zone() -> None:
    assert parse_policy(DOC).announce == datetime(2026, 11, 1, tzinfo=SYDNEY)
    assert parse_policy(DOC).announce.isoformat() == "2026-11-01T00:00:00+11:00"


def test_the_end_of_a_day_follows_daylight_saving_changes() -> None:
    # Sydney leaves daylight saving on 5 April 2026: that day is 25 hours long.
    policy = parse_policy(
        doc_with(schedule__announce="2026-04-05", schedule__deadline="2026-04-05")
    )
    length = policy.deadline.astimezone(UTC) - policy.announce.astimezone(UTC)
    assert length == timedelta(hours=25, microseconds=-1)
    assert policy.deadline.isoformat() == "2026-04-05T23:59:59.999999+10:00"


@pytest.mark.parametrize(
    ("text", "instant"),
    [
        ("2026-12-31T17:00:00+11:00", datetime(2026, 12, 31, 6, tzinfo=UTC)),
        ("2026-12-31T06:00:00Z", datetime(2026, 12, 31, 6, tzinfo=UTC)),
        ("2026-12-31T06:00:00.5+00:00", datetime(2026, 12, 31, 6, 0, 0, 500000, tzinfo=UTC)),
    ],
)
def test_date_times_with_an_offset_are_taken_as_given(text: str, instant: datetime) -> None:
    assert parse_policy(doc_with(schedule__deadline=text)).deadline == instant


def test_optional_keys_take_their_defaults() -> None:
    doc = doc_with(description=..., methods__backup=..., methods__backup_required_for=...)
    del doc["prompt"]
    policy = parse_policy(doc)
    assert policy.description == ""
    assert policy.backup_methods == frozenset()
    assert policy.backup_required_for == frozenset()
    assert policy.max_dismissals is None


def test_a_json_null_dismissal_cap_means_no_cap() -> None:
    assert parse_policy(doc_with(prompt__max_dismissals=None)).max_dismissals is None


def test_every_problem_is_reported_at_once_with_its_path() -> None:
    doc = doc_with(
        version=0,
        colour="blue",
        scope__countries=["AU", "XX"],
        scope__region="APAC",
        schedule__deadline="next tuesday",
        methods__primary=["fax", "totp"],
        windows__code_lifetime="10 minutes",
        attempts__lockout=...,
    )
    assert problems_of(doc) == [
        "colour: unknown key",
        "scope.region: unknown key",
        "version: must be at least 1",
        "scope.countries: unknown country code 'XX'",
        "schedule.deadline: not a date or date-time",
        "methods.primary: unknown method 'fax' (use sms or totp)",
        'windows.code_lifetime: use a number and a unit (s, m, h, d), e.g. "10m"',
        "attempts.lockout: missing (it is required)",
    ]


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"id": "AU 2FA"}, "id: must be a slug"),
        ({"id": 7}, "id: must be a string"),
        ({"version": True}, "version: must be a whole number"),
        ({"version": "1"}, "version: must be a whole number"),
        ({"enabled": "yes"}, "enabled: must be true or false"),
        ({"compliance_profile": "iso27001"}, "compliance_profile: must be 'ato-dsp-osf' or 'none'"),
        ({"scope__countries": "AU"}, "scope.countries: must be a list of strings"),
        ({"scope__countries": []}, "scope.countries: must name at least one"),
        ({"scope__countries": ["au"]}, "scope.countries: unknown country code 'au' (codes are"),
        ({"scope__countries": ["AU", "AU"]}, "scope.countries: 'AU' is listed more than once"),
        ({"scope__roles": ["admin"]}, "scope.roles: unknown role 'admin'"),
        ({"scope__requires_xero_connection": 1}, "scope.requires_xero_connection: must be true"),
        ({"schedule__deadline": "2026-13-01"}, "schedule.deadline: not a date or date-time"),
        ({"schedule__deadline": 20261231}, "schedule.deadline: not a date or date-time"),
        ({"schedule__deadline": "2026-12-31T17:00:00"}, "schedule.deadline: a date-time needs"),
        ({"schedule__announce": "2027-01-01"}, "schedule.announce: is after schedule.deadline"),
        ({"schedule__timezone": "Sydney"}, "schedule.timezone: unknown time zone 'Sydney'"),
        ({"methods__primary": []}, "methods.primary: must name at least one"),
        ({"methods__backup": ["totp"]}, "methods.backup: unknown method 'totp'"),
        ({"methods__backup_required_for": ["owner"]}, "methods.backup_required_for: unknown role"),
        ({"prompt__max_dismissals": -1}, "prompt.max_dismissals: must be at least 0"),
        ({"prompt__max_dismissals": 2.5}, "prompt.max_dismissals: must be a whole number"),
        ({"windows__code_lifetime": 600}, "windows.code_lifetime: use a number and a unit"),
        ({"windows__step_lifetime": "0m"}, "windows.step_lifetime: must be longer than zero"),
        ({"windows__remember_device": "1w"}, "windows.remember_device: use a number and a unit"),
        ({"windows__remember_device": "-1h"}, "windows.remember_device: use a number and a unit"),
        ({"attempts__max_failed": 0}, "attempts.max_failed: must be at least 1"),
        ({"attempts__attempts": 3}, "attempts.attempts: unknown key"),
        ({"scope": ["AU"]}, "scope: must be a table ([scope])"),
        ({"schedule": ...}, "schedule: missing (a [schedule] table is required)"),
        ({"id": ...}, "id: missing (it is required)"),
        ({"schedule__deadline": ...}, "schedule.deadline: missing (it is required)"),
    ],
)
def test_bad_values_are_named_by_their_path(changes: dict[str, Any], problem: str) -> None:
    found = problems_of(doc_with(**changes))
    assert any(p.startswith(problem) for p in found), found


def test_a_missing_table_is_reported_once_not_per_key() -> None:
    assert problems_of(doc_with(windows=...)) == [
        "windows: missing (a [windows] table is required)"
    ]


def test_dates_are_not_placed_in_time_without_a_valid_zone() -> None:
    assert problems_of(doc_with(schedule__timezone="Mars/Olympus")) == [
        "schedule.timezone: unknown time zone 'Mars/Olympus': use an IANA name such as"
        " 'Australia/Sydney' (is the tz database installed?)"
    ]


ZONE_PROBLEM = (
    "schedule.timezone: unknown time zone 'Mars/Olympus': use an IANA name such as"
    " 'Australia/Sydney' (is the tz database installed?)"
)


@pytest.mark.parametrize(
    ("announce", "deadline", "reported"),
    [
        ("2027-02-01", "2026-12-31", True),  # plain dates compare in any one zone
        ("2027-02-01T00:00:00+11:00", "2026-12-31T23:00:00+11:00", True),
        ("2027-02-01T00:00:00+11:00", "2026-12-31", False),  # a mix needs the zone
        ("2026-11-01", "2026-12-31", False),
    ],
)
def test_announce_after_the_deadline_is_reported_beside_a_bad_zone(
    announce: str, deadline: str, reported: bool
) -> None:
    doc = doc_with(
        schedule__timezone="Mars/Olympus", schedule__announce=announce, schedule__deadline=deadline
    )
    after = ["schedule.announce: is after schedule.deadline"] if reported else []
    assert problems_of(doc) == [ZONE_PROBLEM, *after]


def test_a_document_that_is_not_a_table_is_refused() -> None:
    with pytest.raises(PolicyError, match="policy: must be a table of keys"):
        parse_policy(["not", "a", "table"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("90s", timedelta(seconds=90)),
        ("10m", timedelta(minutes=10)),
        ("23h", timedelta(hours=23)),
        ("30d", timedelta(days=30)),
        ("0s", timedelta(0)),
        ("10", None),
        ("10 m", None),
        ("10M", None),
        ("1.5h", None),
        ("m", None),
        ("", None),
        (10, None),
    ],
)
def test_durations_are_a_number_and_a_unit(text: object, duration: timedelta | None) -> None:
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(seconds=90), "90s"),
        (timedelta(minutes=10), "10m"),
        (timedelta(minutes=90), "90m"),
        (timedelta(hours=23), "23h"),
        (timedelta(hours=24), "1d"),
        (timedelta(days=30), "30d"),
    ],
)
def test_durations_are_written_in_the_largest_unit_that_divides_them(
    duration: timedelta, text: str
) -> None:
    assert format_duration(duration) == text


def test_the_document_of_a_policy_is_canonical_json() -> None:
    doc = policy_to_document(parse_policy(DOC))
    assert doc["schedule"] == {
        "announce": "2026-11-01T00:00:00+11:00",
        "deadline": "2026-12-31T23:59:59.999999+11:00",
        "timezone": "Australia/Sydney",
    }
    assert doc["methods"]["primary"] == ["sms", "totp"]
    assert doc["windows"]["remember_device"] == "23h"
    assert doc["prompt"] == {"max_dismissals": 5}
    assert json.loads(json.dumps(doc)) == doc


def test_no_dismissal_cap_leaves_the_key_out_of_the_document() -> None:
    doc = doc_with(prompt__max_dismissals=...)
    assert policy_to_document(parse_policy(doc))["prompt"] == {}


ZONES = ["UTC", "Australia/Sydney", "Australia/Lord_Howe", "Asia/Kathmandu", "America/St_Johns"]
seconds = st.integers(min_value=1, max_value=400 * 86400).map(lambda s: timedelta(seconds=s))
instants = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, *(ZoneInfo(z) for z in ZONES)]),
)


def names(allowed: frozenset[str], *, min_size: int) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(sorted(allowed)), min_size=min_size, max_size=6)


@st.composite
def any_policy(draw: st.DrawFn) -> Policy:
    first, second = sorted([draw(instants), draw(instants)])
    return Policy(
        id=draw(st.from_regex(r"[a-z0-9][a-z0-9-]{0,63}", fullmatch=True)),
        version=draw(st.integers(min_value=1, max_value=10**9)),
        description=draw(st.text(max_size=40)),
        enabled=draw(st.booleans()),
        compliance_profile=draw(st.sampled_from(sorted(PROFILES))),
        countries=draw(names(COUNTRY_CODES, min_size=1)),
        requires_xero_connection=draw(st.booleans()),
        roles=draw(names(ROLES, min_size=1)),
        announce=first,
        deadline=second,
        timezone=draw(st.sampled_from(ZONES)),
        primary_methods=draw(names(PRIMARY_METHODS, min_size=1)),
        backup_methods=draw(names(BACKUP_METHODS, min_size=0)),
        backup_required_for=draw(names(ROLES, min_size=0)),
        max_dismissals=draw(st.none() | st.integers(min_value=0, max_value=1000)),
        code_lifetime=draw(seconds),
        step_lifetime=draw(seconds),
        remember_device=draw(seconds),
        service_refresh_window=draw(seconds),
        max_failed_attempts=draw(st.integers(min_value=1, max_value=1000)),
        lockout=draw(seconds),
    )


@given(any_policy())
def test_a_policy_survives_the_round_trip_through_its_json_document(policy: Policy) -> None:
    document = json.loads(json.dumps(policy_to_document(policy)))
    again = parse_policy(document)
    assert again == policy
    assert again.deadline.utcoffset() == policy.deadline.utcoffset()
    assert policy_to_document(again) == policy_to_document(policy)


# Files: TOML, problems located by file and line.

TOML = """\
# A policy for tests.
id = "au-ato-2fa"
version = 1
description = \"\"\"
[not a table]
deadline = "inside a string"
\"\"\"
enabled = true
compliance_profile = "ato-dsp-osf"

[scope]
countries = ["AU"]
requires_xero_connection = true
roles = ["principal", "member"]

[schedule]
announce = 2026-11-01
deadline = 2026-12-31 # the last day
timezone = "Australia/Sydney"

[methods]
primary = ["totp", "sms"]
backup = ["sms", "email"]
backup_required_for = ["principal"]

[windows]
code_lifetime = "10m"
step_lifetime = "10m"
remember_device = "23h"
service_refresh_window = "8h"

[attempts]
max_failed = 5
lockout = "15m"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def file_problems(path: Path) -> list[str]:
    with pytest.raises(PolicyError) as info:
        load_policy_file(path)
    return info.value.problems


def test_a_toml_file_with_plain_dates_loads(tmp_path: Path) -> None:
    policy = load_policy_file(write(tmp_path, TOML))
    assert policy.deadline == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY)
    assert policy.description == '[not a table]\ndeadline = "inside a string"\n'
    assert policy.max_dismissals is None


def test_a_toml_offset_date_time_is_taken_as_given(tmp_path: Path) -> None:
    text = TOML.replace("deadline = 2026-12-31 #", "deadline = 2026-12-31T17:00:00+11:00 #")
    policy = load_policy_file(write(tmp_path, text))
    assert policy.deadline == datetime(2026, 12, 31, 6, tzinfo=UTC)


def test_file_problems_carry_the_file_and_the_line_of_the_key(tmp_path: Path) -> None:
    text = (
        TOML.replace("deadline = 2026-12-31 #", 'deadline = "soon" #')
        .replace('countries = ["AU"]', 'countries = ["AU", "XX"]')
        .replace('code_lifetime = "10m"', 'code_lifetime = "ten minutes"')
        .replace('lockout = "15m"\n', "")
        + "\n[extras]\ncolour = 1\n"
    )
    path = write(tmp_path, text)
    assert file_problems(path) == [
        f"{path}:35: extras: unknown key",
        f"{path}:12: scope.countries: unknown country code 'XX'",
        f"{path}:18: schedule.deadline: not a date or date-time",
        f'{path}:27: windows.code_lifetime: use a number and a unit (s, m, h, d), e.g. "10m"',
        f"{path}:32: attempts.lockout: missing (it is required)",
    ]


def test_a_local_date_time_in_toml_is_refused_for_want_of_an_offset(tmp_path: Path) -> None:
    path = write(
        tmp_path, TOML.replace("deadline = 2026-12-31 #", "deadline = 2026-12-31T17:00:00 #")
    )
    assert file_problems(path) == [
        f"{path}:18: schedule.deadline: a date-time needs an offset, e.g."
        " 2026-12-31T17:00:00+11:00 (or give a plain date)"
    ]


def test_a_missing_top_level_key_has_no_line(tmp_path: Path) -> None:
    path = write(tmp_path, TOML.replace("version = 1\n", ""))
    assert file_problems(path) == [f"{path}: version: missing (it is required)"]


def test_toml_syntax_errors_carry_their_line(tmp_path: Path) -> None:
    path = write(tmp_path, TOML.replace('timezone = "Australia/Sydney"', "timezone = Sydney"))
    [problem] = file_problems(path)
    assert problem.startswith(f"{path}:19: not valid TOML: ")
    assert "(column" in problem


def test_an_unreadable_file_is_a_policy_error(tmp_path: Path) -> None:
    [problem] = file_problems(tmp_path / "absent.toml")
    assert problem.startswith(f"{tmp_path / 'absent.toml'}: cannot read the file")


def test_a_file_that_is_not_utf8_is_a_policy_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('description = "café"'.encode("latin-1"))
    [problem] = file_problems(path)
    assert problem.startswith(f"{path}: not UTF-8 text")


def test_key_lines_follow_tables_dotted_keys_and_skip_multiline_strings() -> None:
    lines = key_lines(TOML + "\n[a . 'b']\nc.d = 1\n\"e\" = 2\n")
    assert lines["description"] == 4
    assert "not a table" not in lines
    assert lines["enabled"] == 8
    assert lines["schedule"] == 16
    assert lines["schedule.deadline"] == 18
    assert lines["a.b"] == 36
    assert lines["a.b.c.d"] == 37
    assert lines["a.b.e"] == 38


def test_policy_text_is_parsed_without_a_file_and_problems_carry_its_name() -> None:
    policy = parse_policy_text(TOML, "inline")
    assert policy.deadline == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY)
    with pytest.raises(PolicyError) as info:
        parse_policy_text(TOML.replace("version = 1\n", "version = 'one'\n"), "<stdin>")
    assert info.value.problems == ["<stdin>:3: version: must be a whole number"]
    with pytest.raises(PolicyError) as syntax:
        parse_policy_text("id = ?\n", "<stdin>")
    [problem] = syntax.value.problems
    assert problem.startswith("<stdin>:1: not valid TOML: ")


def test_the_policy_package_reads_no_files() -> None:
    package = Path(__file__).resolve().parent.parent / "gateway" / "policy"
    for module in package.glob("*.py"):
        source = module.read_text()
        for reading in ("open(", "read_bytes(", "read_text(", "import pathlib", "import os"):
            assert reading not in source, f"{module.name} reads files ({reading})"
