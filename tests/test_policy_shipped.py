"""The shipped AU policy: loads, lints clean, says what the ATO rules ask, and documents itself."""

from __future__ import annotations

import re
import tomllib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.enforcement.policy_files import load_policy_file
from gateway.policy import (
    Enrolment,
    Facts,
    Outcome,
    SessionState,
    Subject,
    TenantFact,
    decide,
    lint,
    parse_policy,
    policy_to_document,
)
from gateway.sandbox.demo import DEMO_ZONE

SHIPPED = Path(__file__).resolve().parent.parent / "policies" / "au-ato-2fa.toml"
SYDNEY = ZoneInfo("Australia/Sydney")


def test_the_shipped_policy_loads_and_lints_clean_on_30_november_2026() -> None:
    policy = load_policy_file(SHIPPED)
    assert lint(policy, now=datetime(2026, 11, 30, 12, tzinfo=SYDNEY)) == []


def test_the_shipped_policy_says_what_the_rollout_needs() -> None:
    policy = load_policy_file(SHIPPED)
    assert policy.id == "au-ato-2fa"
    assert policy.enabled
    assert policy.compliance_profile == "ato-dsp-osf"
    assert policy.countries == frozenset({"AU"})
    assert policy.requires_xero_connection
    assert policy.roles == frozenset({"principal", "member"})
    assert policy.announce == datetime(2026, 11, 1, tzinfo=SYDNEY)
    assert policy.deadline == datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=SYDNEY)
    assert policy.primary_methods == frozenset({"totp", "sms"})
    assert policy.backup_methods == frozenset({"sms", "email"})
    assert policy.backup_required_for == frozenset({"principal"})
    assert policy.max_dismissals is None
    assert policy.code_lifetime == policy.step_lifetime == timedelta(minutes=10)
    assert policy.remember_device == timedelta(hours=23)
    assert policy.service_refresh_window == timedelta(hours=8)
    assert policy.max_failed_attempts == 5
    assert policy.lockout == timedelta(minutes=15)


def test_the_shipped_policy_survives_its_document_round_trip() -> None:
    policy = load_policy_file(SHIPPED)
    assert parse_policy(policy_to_document(policy)) == policy


def leaves(table: dict[str, Any]) -> list[str]:
    found = []
    for key, value in table.items():
        found.extend(leaves(value) if isinstance(value, dict) else [key])
    return found


def test_every_key_of_the_shipped_policy_has_a_comment_above_it() -> None:
    lines = SHIPPED.read_text(encoding="utf-8").splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"[a-z_]+ = ", line)]
    assert len(keys) == len(leaves(tomllib.loads("\n".join(lines))))  # one key a line
    for i in keys:
        assert lines[i - 1].startswith("#"), f"line {i + 1} ({lines[i]!r}) has no comment"


def test_the_shipped_policy_explains_its_remember_me_limit_and_the_dismissal_cap() -> None:
    text = SHIPPED.read_text(encoding="utf-8")
    assert "under 24 hours" in text
    assert "# max_dismissals = 5" in text


def test_an_australian_user_is_blocked_the_moment_1_january_2027_begins_in_sydney() -> None:
    policy = load_policy_file(SHIPPED)
    user = Subject(user_id="u", org_id="o", role="member")
    enrolment = Enrolment(enrolled=False, has_backup=False, methods=frozenset())
    facts = Facts(tenants=(TenantFact(tenant_id="t", country="AU", active=True),))
    session = SessionState(mfa_verified=False, dismissed=False, dismissals=0)
    last = datetime.fromisoformat("2026-12-31T23:59:59+11:00")
    first = datetime.fromisoformat("2027-01-01T00:00:00+11:00")
    assert decide([policy], user, enrolment, facts, session, last).outcome is Outcome.PROMPT
    assert decide([policy], user, enrolment, facts, session, first).outcome is Outcome.ENROL


def test_the_comment_on_remembered_devices_says_what_lint_does() -> None:
    # The comment promises a warning for 30d, and a failure only with --strict: check that.
    comments = " ".join(line.lstrip("# ") for line in SHIPPED.read_text().splitlines())
    assert "30d gets a lint warning, and fails `policy lint --strict`" in comments
    document = policy_to_document(load_policy_file(SHIPPED))
    document["windows"]["remember_device"] = "30d"
    warnings = lint(parse_policy(document), now=datetime(2026, 11, 30, 12, tzinfo=SYDNEY))
    assert [w.field for w in warnings] == ["windows.remember_device"]


def test_the_demo_reads_a_plain_date_in_the_shipped_policy_zone() -> None:
    assert load_policy_file(SHIPPED).timezone == DEMO_ZONE
