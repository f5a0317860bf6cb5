"""The pure send limits: windows, refusals, refunds and the words the user reads."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.mfa.send_limits import (
    SendLimit,
    SendRule,
    book_send,
    limited_message,
    refund_send,
    wait_before_send,
)
from gateway.store.records import ThrottleState

RULE = SendRule(max_sends=3, window=900.0)


def test_the_window_fills_then_refuses_until_it_ends() -> None:
    state: ThrottleState | None = None
    for n in range(3):
        state, allowed = book_send(state, RULE, 100.0 + n)
        assert allowed
    assert state == ThrottleState(failures=3, window_started_at=100.0, locked_until=1000.0)
    refused, allowed = book_send(state, RULE, 999.0)
    assert not allowed
    assert refused == state
    assert wait_before_send(state, RULE, 999.0) == 1.0
    fresh, allowed = book_send(state, RULE, 1000.0)
    assert allowed
    assert fresh == ThrottleState(failures=1, window_started_at=1000.0, locked_until=1900.0)


def test_a_refund_gives_one_send_back() -> None:
    state, _ = book_send(None, RULE, 0.0)
    assert refund_send(state) is None
    full = ThrottleState(failures=3, window_started_at=0.0, locked_until=900.0)
    assert book_send(refund_send(full), RULE, 10.0)[1]
    assert refund_send(None) is None


@given(
    times=st.lists(st.floats(min_value=0, max_value=10_000, allow_nan=False), max_size=40),
    max_sends=st.integers(min_value=1, max_value=6),
    window=st.floats(min_value=1, max_value=3_000, allow_nan=False),
)
def test_no_window_ever_holds_more_than_the_rule_allows(
    times: list[float], max_sends: int, window: float
) -> None:
    rule = SendRule(max_sends=max_sends, window=window)
    state: ThrottleState | None = None
    allowed_at: list[float] = []
    for now in sorted(times):
        state, allowed = book_send(state, rule, now)
        if allowed:
            allowed_at.append(now)
        else:
            assert wait_before_send(state, rule, now) > 0
        assert state is not None
        assert state.locked_until > state.window_started_at
    # A fixed window: any span of one window holds at most two windows' worth of sends.
    for start in allowed_at:
        assert sum(start <= t < start + window for t in allowed_at) <= 2 * max_sends
    # And nobody is refused for good: a window after the last send always lets one through.
    if allowed_at:
        assert book_send(state, rule, allowed_at[-1] + window)[1]


def test_refusals_say_how_long_to_wait_without_naming_the_destination() -> None:
    assert limited_message(SendLimit.USER, 30) == (
        "You have asked for too many codes. Wait a minute, then send again."
    )
    assert "12 minutes" in limited_message(SendLimit.DESTINATION, 11 * 60 + 1)
    assert "another method" in limited_message(SendLimit.SMS_GLOBAL, 100)
