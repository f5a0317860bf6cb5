"""The policy's reminder points: read, checked (bad values named with their line), written back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.policy import PolicyError, lint, parse_policy, parse_policy_text, policy_to_document
from gateway.schema.policies import policy_document_schema
from tests.test_policy_document import DOC, TOML, doc_with

TEXT = TOML + "\n[reminders]\ndays_before = {days}\n"
LINE = TEXT.splitlines().index("days_before = {days}") + 1


def test_absent_means_14_7_and_1_days() -> None:
    assert parse_policy(DOC).reminder_days == (14, 7, 1)


def test_points_are_kept_largest_first_and_written_back_the_same() -> None:
    policy = parse_policy(doc_with(reminders={"days_before": [1, 30, 0]}))
    assert policy.reminder_days == (30, 1, 0)
    document = policy_to_document(policy)
    assert document["reminders"] == {"days_before": [30, 1, 0]}
    assert parse_policy(document) == policy


def test_an_empty_list_sends_none() -> None:
    assert parse_policy(doc_with(reminders={"days_before": []})).reminder_days == ()


@pytest.mark.parametrize(
    ("days", "problem"),
    [
        ("[14, -1]", "-1 is out of range: use whole days from 0 to 365"),
        ("[400]", "400 is out of range"),
        ("[7, 7]", "7 is listed more than once"),
        ('["7"]', "must be a list of whole numbers of days"),
        ("[true]", "must be a list of whole numbers of days"),
        ("7", "must be a list of whole numbers of days"),
        ("[1.5]", "must be a list of whole numbers of days"),
    ],
)
def test_bad_points_are_named_with_their_line(days: str, problem: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(TEXT.format(days=days), "p.toml")
    (line,) = caught.value.problems
    assert line.startswith(f"p.toml:{LINE}: reminders.days_before: ")
    assert problem in line


def test_an_unknown_key_in_the_table_is_named() -> None:
    text = TEXT.format(days="[1]") + "weeks_before = [2]\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy_text(text, "p.toml")
    assert caught.value.problems == [f"p.toml:{LINE + 1}: reminders.weeks_before: unknown key"]


def test_the_schema_describes_the_points() -> None:
    schema = policy_document_schema()["properties"]["reminders"]["properties"]["days_before"]
    assert schema["type"] == "array"
    assert schema["items"] == {"type": "integer", "minimum": 0, "maximum": 365}
    assert schema["uniqueItems"] is True


def test_lint_warns_when_every_point_comes_before_the_announcement() -> None:
    # Announced 1 November, deadline 31 December: 60 days before is 1 November, 09:00.
    now = datetime(2026, 10, 1, tzinfo=UTC)

    def warned(days: list[int]) -> list[str]:
        policy = parse_policy(doc_with(reminders={"days_before": days}))
        return [w.message for w in lint(policy, now=now) if w.field == "reminders.days_before"]

    assert warned([90, 70]) == [
        "every reminder point comes before the policy is announced"
        " (2026-11-01T00:00:00+11:00), so no reminder is ever sent"
    ]
    assert warned([90, 60]) == []
    assert warned([]) == []
