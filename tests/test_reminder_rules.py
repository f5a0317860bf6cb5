"""What is due, judged purely: a table of cases, and properties over any rounds at any times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.policy import Facts, Policy, TenantFact, parse_policy
from gateway.policy.reminder_points import point_time
from gateway.reminders.due import Recipient, State, due, due_reminders, iso_week, latest_point
from gateway.reminders.service import MAX_ATTEMPTS, retry_delay
from gateway.store.reminders import Claim, ClaimKey
from tests.test_policy_document import doc_with

DEADLINE = datetime.fromisoformat("2026-12-31T23:59:59.999999+11:00")


def policy(days: list[int] | None = None, **changes: Any) -> Policy:
    base: dict[str, Any] = {
        "scope": {"countries": ["AU"], "requires_xero_connection": True, "roles": ["member"]},
        "methods": {"primary": ["totp"], "backup": [], "backup_required_for": []},
    }
    if days is not None:
        base["reminders"] = {"days_before": days}
    return parse_policy(doc_with(**{**base, **changes}))


def user(
    user_id: str = "u", org: str = "au", role: str = "member", enrolled: bool = False
) -> Recipient:
    return Recipient(
        user_id=user_id,
        org_id=org,
        role=role,
        email=f"{user_id}@x.example",
        name=user_id,
        enrolled=enrolled,
    )


FACTS = {
    "au": Facts(tenants=(TenantFact(tenant_id="a", country="AU", active=True),)),
    "nz": Facts(tenants=(TenantFact(tenant_id="n", country="NZ", active=True),)),
}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text)


def state(p: Policy, users: list[Recipient], claims: dict[ClaimKey, Claim] | None = None) -> State:
    return State(policies=[p], users=users, facts=FACTS, claims=claims or {})


def points(
    p: Policy, users: list[Recipient], now: datetime, claims: dict[ClaimKey, Claim] | None = None
) -> list[str]:
    return [d.key.point for d in due_reminders(state(p, users, claims), now)]


@pytest.mark.parametrize(
    ("now", "who", "expected"),
    [
        ("2026-12-17T08:59:59+11:00", user(), []),
        ("2026-12-17T09:00:00+11:00", user(), ["14d-2026-12-31"]),
        ("2026-12-23T23:00:00+11:00", user(), ["14d-2026-12-31"]),
        ("2026-12-24T09:00:00+11:00", user(), ["7d-2026-12-31"]),
        ("2026-12-31T23:59:59+11:00", user(), ["1d-2026-12-31"]),
        ("2027-01-01T00:00:00+11:00", user(), []),  # the deadline has passed
        ("2026-12-24T09:00:00+11:00", user(enrolled=True), []),
        ("2026-12-24T09:00:00+11:00", user(org="nz"), []),  # its tenant is not in scope
        ("2026-12-24T09:00:00+11:00", user(role="principal"), []),  # not a covered role
        ("2026-10-24T09:00:00+11:00", user(), []),  # before the policy is announced
    ],
)
def test_what_is_due(now: str, who: Recipient, expected: list[str]) -> None:
    assert points(policy(), [who], local(now)) == expected


def test_a_claimed_point_is_not_due_until_a_failed_one_may_be_retried() -> None:
    now = local("2026-12-24T10:00:00+11:00")
    key = ClaimKey(kind="reminder", recipient_id="u", policy_id="au-ato-2fa", point="7d-2026-12-31")
    for status, retry_at, expected in [
        ("sending", None, []),
        ("sent", None, []),
        ("abandoned", None, []),
        ("failed", now.timestamp() + 1, []),
        ("failed", now.timestamp(), [True]),
    ]:
        claims = {key: Claim(key=key, status=status, attempts=1, retry_at=retry_at)}  # type: ignore[arg-type]
        found = due_reminders(state(policy(), [user()], claims), now)
        assert [d.retry for d in found] == expected, status


def test_a_moved_deadline_has_points_of_its_own() -> None:
    moved = policy(
        schedule={
            "announce": "2026-11-01",
            "deadline": "2027-01-31",
            "timezone": "Australia/Sydney",
        }
    )
    now = local("2027-01-24T09:00:00+11:00")
    assert points(moved, [user()], now) == ["7d-2027-01-31"]


def test_days_left_count_calendar_days_in_the_policy_zone() -> None:
    p = policy()
    (found,) = due_reminders(state(p, [user()]), local("2026-12-30T23:30:00+11:00"))
    assert found.days_left == 1
    (found,) = due_reminders(state(p, [user()]), local("2026-12-31T00:30:00+11:00"))
    assert found.days_left == 0


def test_no_summary_for_an_organisation_whose_members_are_all_set_up() -> None:
    now = local("2026-12-07T10:00:00+11:00")
    p = policy(
        scope={
            "countries": ["AU"],
            "requires_xero_connection": True,
            "roles": ["principal", "member"],
        }
    )
    boss = user("boss", role="principal", enrolled=True)
    assert due(state(p, [boss, user(enrolled=True)]), now) == []
    (summary,) = due(state(p, [boss, user()]), now)
    assert (summary.key.kind, summary.key.point, summary.recipient) == ("summary", "2026-W50", boss)


def test_retries_wait_longer_each_time_and_stop() -> None:
    delays = [retry_delay(n) for n in range(1, MAX_ATTEMPTS + 1)]
    assert delays == [900.0, 1800.0, 3600.0, 7200.0, None]
    assert iso_week(local("2027-01-01T00:00:00+11:00").date()) == "2026-W53"


@settings(max_examples=150, deadline=None)
@given(
    days=st.lists(st.integers(min_value=0, max_value=40), unique=True, max_size=5),
    steps=st.lists(st.integers(min_value=1, max_value=3 * 86400), min_size=1, max_size=60),
)
def test_any_rounds_send_each_point_at_most_once_and_the_latest_come(
    days: list[int], steps: list[int]
) -> None:
    """Rounds at any times: no key twice, never before its point or after the deadline, and a
    round finds nothing once the latest point that has come is claimed."""
    p = policy(
        days,
        schedule={
            "announce": "2026-10-01",
            "deadline": "2026-12-31",
            "timezone": "Australia/Sydney",
        },
    )
    claims: dict[ClaimKey, Claim] = {}
    now = datetime(2026, 11, 15, tzinfo=UTC)
    for step in steps:
        now += timedelta(seconds=step)
        for found in due_reminders(state(p, [user()], claims), now):
            assert found.key not in claims
            come = latest_point(p, now)
            assert come is not None
            assert point_time(p, come) <= now <= p.deadline
            assert found.key.point.startswith(f"{come}d-")
            claims[found.key] = Claim(key=found.key, status="sent", attempts=1, retry_at=None)
        assert due_reminders(state(p, [user()], claims), now) == []
    assert len(claims) <= len(days)
