"""The Policy record refuses impossible policies and keeps its instants in its own time zone."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.policy import COUNTRY_CODES, Policy

SYDNEY = ZoneInfo("Australia/Sydney")

GOOD: dict[str, Any] = {
    "id": "au-ato-2fa",
    "version": 1,
    "description": "",
    "enabled": True,
    "compliance_profile": "ato-dsp-osf",
    "countries": frozenset({"AU"}),
    "requires_xero_connection": True,
    "roles": frozenset({"principal", "member"}),
    "announce": datetime(2026, 11, 1, tzinfo=SYDNEY),
    "deadline": datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY),
    "timezone": "Australia/Sydney",
    "primary_methods": frozenset({"totp", "sms"}),
    "backup_methods": frozenset({"sms", "email"}),
    "backup_required_for": frozenset({"principal"}),
    "max_dismissals": None,
    "code_lifetime": timedelta(minutes=10),
    "step_lifetime": timedelta(minutes=10),
    "remember_device": timedelta(hours=23),
    "service_refresh_window": timedelta(hours=8),
    "max_failed_attempts": 5,
    "lockout": timedelta(minutes=15),
}


def test_a_good_policy_is_built() -> None:
    policy = Policy(**GOOD)
    assert policy.id == "au-ato-2fa"
    assert hash(policy) == hash(Policy(**GOOD))


def test_instants_are_kept_in_the_policy_time_zone_and_compare_as_instants() -> None:
    policy = Policy(**{**GOOD, "deadline": datetime(2026, 12, 31, 13, tzinfo=UTC)})
    assert policy.deadline.utcoffset() == timedelta(hours=11)
    assert policy.deadline.isoformat() == "2027-01-01T00:00:00+11:00"
    assert policy == Policy(**{**GOOD, "deadline": datetime(2027, 1, 1, tzinfo=SYDNEY)})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"id": "AU-2fa"}, "id must be a slug"),
        ({"id": "-au"}, "id must be a slug"),
        ({"id": "a" * 65}, "id must be a slug"),
        ({"id": ""}, "id must be a slug"),
        ({"version": 0}, "version must be at least 1"),
        ({"compliance_profile": "pci"}, "compliance_profile must be 'ato-dsp-osf' or 'none'"),
        ({"countries": frozenset()}, "countries must name at least one"),
        ({"countries": frozenset({"XX"})}, "countries unknown country code 'XX'"),
        ({"countries": frozenset({"au"})}, "unknown country code 'au' (codes are upper case"),
        ({"roles": frozenset({"owner"})}, "roles unknown role 'owner'"),
        ({"roles": frozenset()}, "roles must name at least one"),
        ({"announce": datetime(2027, 1, 2, tzinfo=SYDNEY)}, "announce must not be after"),
        ({"deadline": datetime(2026, 12, 31)}, "deadline must carry a time zone offset"),
        ({"timezone": "Australia/Atlantis"}, "unknown time zone 'Australia/Atlantis'"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"primary_methods": frozenset()}, "primary_methods must name at least one"),
        ({"primary_methods": frozenset({"fax"})}, "primary_methods unknown method 'fax'"),
        ({"backup_methods": frozenset({"totp"})}, "backup_methods unknown method 'totp'"),
        ({"backup_required_for": frozenset({"owner"})}, "backup_required_for unknown role"),
        ({"max_dismissals": -1}, "max_dismissals must be at least 0"),
        ({"code_lifetime": timedelta(0)}, "code_lifetime must be longer than zero"),
        ({"lockout": timedelta(seconds=1.5)}, "lockout must be a whole number of seconds"),
        ({"max_failed_attempts": 0}, "max_failed_attempts must be at least 1"),
    ],
)
def test_impossible_policies_are_refused_with_a_sentence(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match="Invalid policy") as info:
        Policy(**{**GOOD, **change})
    assert message in str(info.value)
    assert str(info.value).endswith(".")


def test_every_problem_is_named_at_once() -> None:
    with pytest.raises(ValueError, match="version must be at least 1") as info:
        Policy(**{**GOOD, "version": 0, "max_failed_attempts": 0})
    assert "max_failed_attempts must be at least 1" in str(info.value)


def test_no_cap_and_a_cap_of_zero_are_both_valid() -> None:
    assert Policy(**{**GOOD, "max_dismissals": 0}).max_dismissals == 0
    assert Policy(**GOOD).max_dismissals is None


def test_policies_are_immutable() -> None:
    policy = Policy(**GOOD)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.enabled = False  # type: ignore[misc]


def test_country_codes_are_the_249_assigned_iso_codes() -> None:
    assert len(COUNTRY_CODES) == 249
    assert {"AU", "NZ", "GB", "US", "SS", "BQ", "AX"} <= COUNTRY_CODES
    assert not {"UK", "EU", "XK", "au"} & COUNTRY_CODES
    assert all(len(code) == 2 and code.isupper() for code in COUNTRY_CODES)


def test_announce_and_deadline_compare_as_instants_in_a_repeated_hour() -> None:
    # 5 April 2026, Sydney: 02:00-03:00 happens twice. 02:45 the first time (+11:00) comes
    # before 02:30 the second time (+10:00), though its wall time is later.
    first = datetime(2026, 4, 5, 2, 45, tzinfo=SYDNEY, fold=0)
    second = datetime(2026, 4, 5, 2, 30, tzinfo=SYDNEY, fold=1)
    policy = Policy(**{**GOOD, "announce": first, "deadline": second})
    assert policy.announce.isoformat() == "2026-04-05T02:45:00+11:00"
    assert policy.deadline.isoformat() == "2026-04-05T02:30:00+10:00"
    with pytest.raises(ValueError, match="announce must not be after the deadline"):
        Policy(**{**GOOD, "announce": second, "deadline": first})


def test_a_wall_time_that_never_happened_is_kept_as_the_instant_it_stands_for() -> None:
    # 4 October 2026, Sydney: clocks jump from 02:00 to 03:00, so 02:30 never happens.
    early = {**GOOD, "announce": datetime(2026, 9, 1, tzinfo=SYDNEY)}
    policy = Policy(**{**early, "deadline": datetime(2026, 10, 4, 2, 30, tzinfo=SYDNEY)})
    same = Policy(**{**early, "deadline": datetime(2026, 10, 3, 16, 30, tzinfo=UTC)})
    assert policy.deadline.isoformat() == "2026-10-04T03:30:00+11:00"
    assert policy == same
    assert hash(policy) == hash(same)
