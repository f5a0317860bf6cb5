"""Policy lint: valid but unwise policies, and the ATO profile's limits, each get a warning."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.policy import LintWarning, Policy, lint

SYDNEY = ZoneInfo("Australia/Sydney")
NOW = datetime(2026, 11, 30, 12, tzinfo=SYDNEY)

CLEAN = Policy(
    id="au-ato-2fa",
    version=1,
    description="",
    enabled=True,
    compliance_profile="ato-dsp-osf",
    countries=frozenset({"AU"}),
    requires_xero_connection=True,
    roles=frozenset({"principal", "member"}),
    announce=datetime(2026, 11, 1, tzinfo=SYDNEY),
    deadline=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY),
    timezone="Australia/Sydney",
    primary_methods=frozenset({"totp", "sms"}),
    backup_methods=frozenset({"sms", "email"}),
    backup_required_for=frozenset({"principal"}),
    max_dismissals=None,
    code_lifetime=timedelta(minutes=10),
    step_lifetime=timedelta(minutes=10),
    remember_device=timedelta(hours=23),
    service_refresh_window=timedelta(hours=8),
    max_failed_attempts=5,
    lockout=timedelta(minutes=15),
)


def fields_warned(**changes: Any) -> list[str]:
    return [w.field for w in lint(dataclasses.replace(CLEAN, **changes), now=NOW)]


def test_a_sound_ato_policy_has_no_warnings() -> None:
    assert lint(CLEAN, now=NOW) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"remember_device": timedelta(days=30)}, "windows.remember_device"),
        ({"remember_device": timedelta(hours=24)}, "windows.remember_device"),
        ({"deadline": datetime(2026, 11, 29, tzinfo=SYDNEY)}, "schedule.deadline"),
        ({"primary_methods": frozenset({"sms"})}, "methods.primary"),
        ({"backup_methods": frozenset()}, "methods.backup"),
        ({"compliance_profile": "none"}, "compliance_profile"),
        ({"code_lifetime": timedelta(minutes=10, seconds=1)}, "windows.code_lifetime"),
    ],
)
def test_each_rule_warns_on_its_field(changes: dict[str, Any], field: str) -> None:
    assert fields_warned(**changes) == [field]


def test_a_30_day_remember_me_fails_the_ato_profile_with_a_reason() -> None:
    [warning] = lint(dataclasses.replace(CLEAN, remember_device=timedelta(days=30)), now=NOW)
    assert warning == LintWarning(
        field="windows.remember_device",
        message="devices are remembered for 30d; the ATO framework allows under 24 hours"
        " (e.g. 23h)",
    )


def test_remember_me_is_not_held_to_the_ato_limit_outside_the_profile() -> None:
    assert (
        fields_warned(
            countries=frozenset({"NZ"}),
            compliance_profile="none",
            remember_device=timedelta(days=30),
        )
        == []
    )


def test_an_au_policy_without_the_ato_profile_is_warned() -> None:
    [warning] = lint(dataclasses.replace(CLEAN, compliance_profile="none"), now=NOW)
    assert "applies to AU" in warning.message


def test_sms_beside_totp_is_fine_and_totp_alone_is_fine() -> None:
    assert fields_warned(primary_methods=frozenset({"totp"})) == []


def test_no_backup_methods_is_fine_when_no_role_needs_one() -> None:
    assert fields_warned(backup_methods=frozenset(), backup_required_for=frozenset()) == []


def test_a_deadline_is_past_only_once_it_has_gone_by() -> None:
    deadline = datetime(2026, 11, 30, 12, tzinfo=SYDNEY)
    assert fields_warned(deadline=deadline) == []
    assert fields_warned(deadline=deadline - timedelta(microseconds=1)) == ["schedule.deadline"]


def test_warnings_come_in_document_order() -> None:
    assert fields_warned(
        compliance_profile="none",
        deadline=datetime(2026, 11, 2, tzinfo=UTC),
        primary_methods=frozenset({"sms"}),
        backup_methods=frozenset(),
        code_lifetime=timedelta(hours=1),
    ) == [
        "compliance_profile",
        "schedule.deadline",
        "methods.primary",
        "methods.backup",
        "windows.code_lifetime",
    ]


def test_lint_needs_an_aware_now() -> None:
    with pytest.raises(ValueError, match="aware"):
        lint(CLEAN, now=datetime(2026, 11, 30))
