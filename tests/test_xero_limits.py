"""Xero's rate limits as arithmetic: rolling counts, start times, and the admission rule."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.config import XERO_TIERS
from gateway.xero.limits import (
    DAY,
    DAY_GRANULARITY,
    MINUTE,
    TIERS,
    Counts,
    Limits,
    RollingCount,
    daily_limit,
    may_start,
    start_times,
)


def _window(period: float, times: list[float], granularity: float = 0.0) -> RollingCount:
    window = RollingCount(period, granularity)
    for at in times:
        window.add(at)
    return window


def test_config_offers_the_tiers_the_arithmetic_knows() -> None:
    assert XERO_TIERS == TIERS


@pytest.mark.parametrize(
    ("tier", "limit"), [("starter", 1000), ("standard", 5000)], ids=["starter", "standard"]
)
def test_a_tier_has_its_daily_budget(tier: str, limit: int) -> None:
    assert daily_limit(tier) == limit


def test_an_unknown_tier_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown Xero tier 'gold': use one of starter, standard"):
        daily_limit("gold")


@pytest.mark.parametrize(
    "limits",
    [{"in_flight": 0}, {"per_minute": 0}, {"app_per_minute": 0}],
)
def test_limits_below_one_are_refused(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="invalid rate limits"):
        Limits(**limits)


@pytest.mark.parametrize(
    ("times", "now", "used"),
    [
        ([], 0.0, 0),
        ([0.0], 0.0, 1),
        ([0.0], 59.999, 1),
        ([0.0], 60.0, 0),  # a call at 0 stops counting at 60
        ([0.0, 30.0, 59.0], 60.0, 2),
        ([0.0, 30.0, 59.0], 89.9, 2),
        ([0.0, 30.0, 59.0], 90.0, 1),
        ([0.0, 30.0, 59.0], 119.0, 0),
    ],
)
def test_a_rolling_minute_counts_the_calls_of_the_last_sixty_seconds(
    times: list[float], now: float, used: int
) -> None:
    assert _window(MINUTE, times).used(now) == used


def test_calls_close_together_share_an_entry_at_the_later_time() -> None:
    window = _window(DAY, [0.0, 30.0, 60.0, 61.0, 200.0], DAY_GRANULARITY)
    assert window.entries(200.0) == ((30.0, 2), (61.0, 2), (200.0, 1))
    # A merged entry outlives its first call: the count is never less than the truth.
    assert window.used(DAY + 29.0) == 5
    assert window.used(DAY + 30.0) == 3
    assert window.used(DAY + 61.0) == 1


def test_a_steady_trickle_of_calls_does_not_keep_one_entry_alive() -> None:
    window = _window(DAY, [float(t) for t in range(0, 3 * 3600, 30)], DAY_GRANULARITY)
    assert len(window.entries(3 * 3600.0)) == 3 * 60
    assert window.used(DAY + 3600.0) == 2 * 3600 // 30


@pytest.mark.parametrize(
    ("times", "limit", "now", "n", "expected"),
    [
        ([], 3, 0.0, 3, [0.0, 0.0, 0.0]),
        ([], 2, 0.0, 5, [0.0, 0.0, 60.0, 60.0, 120.0]),
        ([10.0, 20.0], 2, 30.0, 3, [70.0, 80.0, 130.0]),
        ([10.0, 20.0], 3, 30.0, 3, [30.0, 70.0, 80.0]),
        ([10.0, 20.0], 2, 75.0, 2, [75.0, 80.0]),
        ([0.0, 0.0, 0.0], 1, 5.0, 2, [60.0, 120.0]),  # over the limit (Xero counted more)
    ],
)
def test_start_times_follow_the_window(
    times: list[float], limit: int, now: float, n: int, expected: list[float]
) -> None:
    assert _window(MINUTE, times).starts(n, limit, now) == expected


def test_raising_a_count_adds_only_what_is_missing_and_never_lowers_it() -> None:
    window = _window(MINUTE, [0.0, 1.0, 2.0])
    assert window.raise_to(2, 3.0) == 0
    assert window.used(3.0) == 3
    assert window.raise_to(10, 3.0) == 7
    assert window.used(3.0) == 10
    assert window.used(62.9) == 7  # Xero's calls are taken as started now
    assert window.used(63.0) == 0


LIMITS = Limits(in_flight=2, per_minute=3, app_per_minute=5)


def _counts(
    minute: tuple[float, ...] = (),
    day: tuple[float, ...] = (),
    app: tuple[float, ...] = (),
    *,
    limits: Limits = LIMITS,
    per_day: int = 4,
    blocked_until: float = 0.0,
) -> Counts:
    return Counts(
        limits=limits,
        per_day=per_day,
        minute=_window(MINUTE, list(minute)),
        day=_window(DAY, list(day), DAY_GRANULARITY),
        app=_window(MINUTE, list(app)),
        blocked_until=blocked_until,
    )


@pytest.mark.parametrize(
    ("in_flight", "counts", "now", "allowed", "first_start"),
    [
        (0, _counts(), 100.0, True, 100.0),
        (2, _counts(), 100.0, False, 100.0),  # in flight: only a release tells when
        (0, _counts(minute=(50.0, 60.0, 70.0)), 100.0, False, 110.0),
        # the day's calls at 10 and 20 share an entry at 20, so they count until 20 + DAY
        (0, _counts(day=(10.0, 20.0, 100.0, 100.0)), 100.0, False, 20.0 + DAY),
        (0, _counts(app=(41.0, 42.0, 43.0, 44.0, 45.0)), 100.0, False, 101.0),
        (0, _counts(blocked_until=130.0), 100.0, False, 130.0),
        (0, _counts(blocked_until=100.0), 100.0, True, 100.0),
    ],
    ids=["free", "in-flight", "minute", "day", "app", "blocked", "block-over"],
)
def test_one_more_call_may_start_when_every_limit_allows(
    in_flight: int, counts: Counts, now: float, allowed: bool, first_start: float
) -> None:
    assert may_start(counts, in_flight=in_flight, now=now) is allowed
    assert start_times(counts, n=1, now=now) == [first_start]


# -- properties ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 400), max_size=40).map(sorted),
    limit=st.integers(1, 6),
    n=st.integers(1, 15),
    now=st.integers(0, 500),
)
def test_start_times_are_the_earliest_the_window_allows(
    times: list[int], limit: int, n: int, now: int
) -> None:
    now = max(now, times[-1] if times else 0)
    window = _window(MINUTE, [float(t) for t in times])
    predicted = window.starts(n, limit, float(now))
    earliest = float(now)
    for start in predicted:
        assert start >= earliest
        if start > earliest:  # (asked first: a count only moves forward in time)
            assert window.used(start - 0.5) >= limit  # not a moment sooner
        assert window.used(start) < limit  # and it fits
        window.add(start)
        earliest = start


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.floats(0, 300, allow_nan=False), max_size=60).map(sorted),
    granularity=st.sampled_from([0.0, 0.01, 1.0, 7.5]),
    probe=st.floats(0, 400, allow_nan=False),
)
def test_a_rolling_count_never_counts_fewer_calls_than_the_window_holds(
    times: list[float], granularity: float, probe: float
) -> None:
    window = _window(MINUTE, times, granularity)
    now = max(probe, times[-1] if times else 0.0)
    truth = sum(1 for t in times if now - MINUTE < t <= now)
    assert window.used(now) >= truth
    assert window.used(now) <= len(times)
    assert window.used(now) == sum(count for _, count in window.entries(now))


_CALL = st.tuples(
    st.integers(0, 3),  # tenant
    st.integers(0, 2 * 3600),  # arrival, in seconds
    st.integers(0, 90),  # how long it stays in flight
)


@settings(max_examples=150, deadline=None)
@given(
    calls=st.lists(_CALL, min_size=1, max_size=120),
    in_flight=st.integers(1, 5),
    per_minute=st.integers(1, 8),
    per_day=st.integers(1, 40),
    app_per_minute=st.integers(1, 12),
    blocked_until=st.integers(0, 600),
)
def test_admitting_by_the_rule_never_breaks_a_limit(
    calls: list[tuple[int, int, int]],
    in_flight: int,
    per_minute: int,
    per_day: int,
    app_per_minute: int,
    blocked_until: int,
) -> None:
    """Callers arrive, wait in order and start whenever ``may_start`` says so; the starts
    never exceed any limit in any window, and nothing starts while blocked."""
    limits = Limits(in_flight=in_flight, per_minute=per_minute, app_per_minute=app_per_minute)
    first = _counts(limits=limits, per_day=per_day, blocked_until=float(blocked_until))
    app = first.app  # one app window, shared by the four tenants
    tenants = [first] + [
        Counts(
            limits=limits,
            per_day=per_day,
            minute=_window(MINUTE, []),
            day=_window(DAY, [], DAY_GRANULARITY),
            app=app,
            blocked_until=float(blocked_until),
        )
        for _ in range(3)
    ]
    running: list[list[float]] = [[] for _ in tenants]  # end times of calls in flight
    started: list[list[float]] = [[] for _ in tenants]
    pending: list[list[int]] = [[] for _ in tenants]  # hold times of waiting calls, in order
    arrivals = sorted(calls, key=lambda c: c[1])
    moments = sorted({float(c[1]) for c in calls})
    index = 0
    # Step through time: at each moment start what may start, in arrival order per tenant,
    # and add the moments at which a waiting call could next start (a window frees, or a
    # call in flight ends).
    while moments:
        now = moments.pop(0)
        while index < len(arrivals) and arrivals[index][1] <= now:
            pending[arrivals[index][0]].append(arrivals[index][2])
            index += 1
        for tenant, counts in enumerate(tenants):
            while pending[tenant]:
                # A call held for no time has ended by now: the next may take its place.
                running[tenant] = [end for end in running[tenant] if end > now]
                if not may_start(counts, in_flight=len(running[tenant]), now=now):
                    break
                counts.minute.add(now)
                counts.day.add(now)
                app.add(now)
                running[tenant].append(now + pending[tenant].pop(0))
                started[tenant].append(now)
                assert len(running[tenant]) <= in_flight
            if pending[tenant]:
                wake = [*start_times(counts, n=1, now=now), *running[tenant]]
                moments = sorted({*moments, *(m for m in wake if m > now)})
    everyone = sorted(t for starts in started for t in starts)
    assert len(everyone) == len(calls)  # every call started in the end
    for starts in started:
        for t in starts:
            assert t >= blocked_until
            assert sum(1 for s in starts if t - MINUTE < s <= t) <= per_minute
            assert sum(1 for s in starts if t - DAY < s <= t) <= per_day
    for t in everyone:
        assert sum(1 for s in everyone if t - MINUTE < s <= t) <= app_per_minute
