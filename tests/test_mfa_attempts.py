"""The second-factor attempt throttle: one count per user across methods, pure, time passed in."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from gateway.mfa.attempts import (
    GENERIC_FAILURE,
    AttemptRule,
    after_success,
    attempt_key,
    book_attempt,
    locked_for,
)
from gateway.policy import combine, parse_policy
from gateway.store.records import ThrottleState

RULE = AttemptRule(max_failed=3, lockout=900.0)
SHIPPED = Path(__file__).resolve().parent.parent / "policies" / "au-ato-2fa.toml"


def book(*times: float) -> tuple[ThrottleState | None, list[bool]]:
    state: ThrottleState | None = None
    allowed = []
    for t in times:
        state, ok = book_attempt(state, RULE, t)
        allowed.append(ok)
    return state, allowed


def test_failures_up_to_the_limit_are_judged_then_the_factor_locks() -> None:
    state, allowed = book(0.0, 1.0, 2.0, 3.0)
    assert allowed == [True, True, True, False]
    assert state == ThrottleState(failures=3, window_started_at=0.0, locked_until=902.0)
    assert locked_for(state, 3.0) == 899.0


@pytest.mark.parametrize(
    ("times", "now", "wait"),
    [
        ((), 0.0, 0.0),
        ((0.0, 1.0), 2.0, 0.0),
        ((0.0, 1.0, 2.0), 2.0, 900.0),
        ((0.0, 1.0, 2.0), 452.0, 450.0),
        ((0.0, 1.0, 2.0), 902.0, 0.0),
        ((0.0, 5000.0), 5001.0, 0.0),
        ((0.0, 5000.0, 9000.0), 9000.0, 900.0),  # consecutive failures count however far apart
    ],
)
def test_locked_for(times: tuple[float, ...], now: float, wait: float) -> None:
    assert locked_for(book(*times)[0], now) == wait


def test_after_the_lock_runs_out_counting_starts_over() -> None:
    state, allowed = book(0.0, 1.0, 2.0, 902.0)
    assert allowed == [True, True, True, True]
    assert state == ThrottleState(failures=1, window_started_at=902.0, locked_until=0.0)


def test_a_refused_attempt_leaves_the_lock_as_it_was() -> None:
    state, _ = book(0.0, 1.0, 2.0)
    assert book_attempt(state, RULE, 10.0) == (state, False)


def test_a_success_clears_the_count() -> None:
    state, _ = book(0.0, 1.0)
    state = after_success(state)
    assert state is None
    state, ok = book_attempt(state, RULE, 2.0)
    assert ok
    assert state == ThrottleState(failures=1, window_started_at=2.0, locked_until=0.0)


def test_the_count_is_one_per_user_whatever_the_method() -> None:
    assert attempt_key("u1") == "mfa:user:u1"
    assert attempt_key("u1") != attempt_key("u2")
    assert not attempt_key("u1").startswith("login:")


def test_the_rule_comes_from_the_policy() -> None:
    policy = parse_policy(tomllib.loads(SHIPPED.read_text()))
    assert AttemptRule.of(combine([policy])) == AttemptRule(max_failed=5, lockout=900.0)


@pytest.mark.parametrize(("max_failed", "lockout"), [(0, 60.0), (3, 0.0), (3, -1.0)])
def test_a_bad_rule_is_refused(max_failed: int, lockout: float) -> None:
    with pytest.raises(ValueError, match="invalid attempt rule"):
        AttemptRule(max_failed=max_failed, lockout=lockout)


def test_the_user_message_names_no_cause() -> None:
    for word in ("expired", "locked", "wrong", "incorrect", "used"):
        assert word not in GENERIC_FAILURE.lower()
