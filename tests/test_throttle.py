"""Throttle judgement: pure, table-driven, time passed in."""

from __future__ import annotations

import pytest

from gateway.store.records import ThrottleState
from gateway.throttle import ThrottleRule, after_failure, book_attempt, refund, retry_after

RULE = ThrottleRule(max_failures=3, window=60.0, lockout=300.0)


def fail_at(*times: float, rule: ThrottleRule = RULE) -> ThrottleState | None:
    state: ThrottleState | None = None
    for t in times:
        state = after_failure(state, rule, t)
    return state


@pytest.mark.parametrize(
    ("times", "now", "wait"),
    [
        ((), 0.0, 0.0),
        ((0.0,), 1.0, 0.0),
        ((0.0, 1.0), 2.0, 0.0),
        ((0.0, 1.0, 2.0), 2.0, 300.0),
        ((0.0, 1.0, 2.0), 152.0, 150.0),
        ((0.0, 1.0, 2.0), 302.0, 0.0),
        ((0.0, 1.0, 61.0), 61.0, 0.0),  # the window restarted at 61
        ((0.0, 1.0, 2.0, 302.0), 302.0, 0.0),  # after a lockout, counting starts over
    ],
)
def test_retry_after(times: tuple[float, ...], now: float, wait: float) -> None:
    assert retry_after(fail_at(*times), now) == wait


def test_failures_in_a_new_window_start_from_one() -> None:
    state = fail_at(0.0, 10.0, 70.0)
    assert state == ThrottleState(failures=1, window_started_at=70.0, locked_until=0.0)


def test_invalid_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="invalid throttle rule"):
        ThrottleRule(max_failures=0, window=1, lockout=1)


def test_booking_counts_attempts_up_to_the_limit_then_refuses() -> None:
    state: ThrottleState | None = None
    verdicts = []
    for _ in range(5):
        state, allowed = book_attempt(state, RULE, 10.0)
        verdicts.append(allowed)
    assert verdicts == [True, True, True, False, False]
    assert state == ThrottleState(failures=3, window_started_at=10.0, locked_until=310.0)


def test_refund_takes_back_one_attempt_and_lifts_a_lock_it_caused() -> None:
    state, _ = book_attempt(fail_at(0.0, 1.0), RULE, 2.0)
    assert state is not None
    assert state.locked_until == 302.0
    assert refund(state, RULE) == ThrottleState(failures=2, window_started_at=0.0, locked_until=0.0)
    assert refund(fail_at(0.0), RULE) is None
    assert refund(None, RULE) is None


SLOWED = ThrottleRule(max_failures=3, window=60.0, lockout=300.0, slowdown=10.0)


@pytest.mark.parametrize(
    ("times", "now", "wait"),
    [
        ((0.0, 1.0), 1.0, 0.0),
        ((0.0, 1.0, 2.0), 2.0, 10.0),  # the limit reached: a short wait, not the lockout
        ((0.0, 1.0, 2.0, 12.0), 12.0, 20.0),  # then each wait doubles
        ((0.0, 1.0, 2.0, 12.0, 32.0), 32.0, 40.0),
        ((0.0, 1.0, 2.0, 12.0, 32.0, 72.0, 152.0), 152.0, 160.0),
        ((0.0, 1.0, 2.0, 12.0, 32.0, 72.0, 152.0, 312.0), 312.0, 300.0),  # up to the lockout
        ((0.0, 1.0, 2.0, 12.0, 32.0, 72.0, 152.0, 312.0, 612.0), 612.0, 300.0),
        # Quiet for a window after the last wait ended: counting starts over.
        ((0.0, 1.0, 2.0, 72.0), 72.0, 0.0),
        # Failures spread out more than a window apart never add up.
        ((0.0, 61.0, 122.0, 183.0), 183.0, 0.0),
    ],
)
def test_a_slowing_rule_makes_each_wait_longer_instead_of_locking(
    times: tuple[float, ...], now: float, wait: float
) -> None:
    assert retry_after(fail_at(*times, rule=SLOWED), now) == wait


def test_a_slowing_rule_counts_while_waits_keep_coming() -> None:
    state = fail_at(0.0, 1.0, 2.0, 12.0, 32.0, 72.0, rule=SLOWED)  # no quiet window since the first
    assert state is not None
    assert state.failures == 6


def test_locking_gives_the_same_limit_without_the_slowdown() -> None:
    assert SLOWED.locking() == RULE


@pytest.mark.parametrize("slowdown", [0.0, -1.0, 301.0])
def test_a_slowdown_must_be_positive_and_within_the_lockout(slowdown: float) -> None:
    with pytest.raises(ValueError, match="invalid throttle rule"):
        ThrottleRule(max_failures=3, window=60.0, lockout=300.0, slowdown=slowdown)
