"""Xero's rate limits as arithmetic: rolling counts of calls, and when the next call may start.

Nothing here reads a clock or waits: every answer is for the ``now`` passed in. The governor
holds one ``RollingCount`` per window and asks these functions when a caller may go.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

MINUTE = 60.0  # seconds in Xero's minute window
DAY = 24 * 3600.0  # seconds in Xero's daily window

# Calls a tenant may make per day, by Xero pricing tier.
TIER_DAILY_LIMITS = {"starter": 1000, "standard": 5000}
TIERS = tuple(TIER_DAILY_LIMITS)

# How closely calls are timed in each window: calls this close together share one entry (at
# the later time), so a day holds at most DAY / 60 entries and a tenant's or the app's minute
# MINUTE / 0.01, however many calls they count (a call counts at most that much longer).
DAY_GRANULARITY = 60.0
MINUTE_GRANULARITY = 0.01
APP_GRANULARITY = 0.01


@dataclass(frozen=True, kw_only=True)
class Limits:
    """What Xero allows: per tenant ``in_flight`` calls at once and ``per_minute`` per rolling
    minute (the day's budget goes by the tenant's tier); ``app_per_minute`` per minute for the
    whole app."""

    in_flight: int = 5
    per_minute: int = 60
    app_per_minute: int = 10_000

    def __post_init__(self) -> None:
        if min(self.in_flight, self.per_minute, self.app_per_minute) < 1:
            raise ValueError(f"invalid rate limits: {self!r}")


def daily_limit(tier: str) -> int:
    """The daily call budget of a Xero pricing tier ('starter' or 'standard')."""
    try:
        return TIER_DAILY_LIMITS[tier]
    except KeyError:
        raise ValueError(f"unknown Xero tier {tier!r}: use one of {', '.join(TIERS)}") from None


class RollingCount:
    """The calls started in the last ``period`` seconds, as (time, count) entries, oldest first.

    A call less than ``granularity`` seconds after the first call of the newest entry joins
    that entry and moves it to the call's (later) time. An entry therefore never sits earlier
    than any call it holds: a call is counted at least as long as it is inside the window
    (at most ``granularity`` seconds longer), so a decision taken on these counts never lets
    more than the limit into any window of ``period`` seconds. A call at time ``a`` stops
    counting at ``a + period``.
    """

    __slots__ = ("_entries", "_total", "granularity", "period")

    def __init__(self, period: float, granularity: float = 0.0) -> None:
        if period <= 0 or granularity < 0:
            raise ValueError(f"invalid window: period {period!r}, granularity {granularity!r}")
        self.period = period
        self.granularity = granularity
        # [time, count, first call's time]; lists, so a call can join the newest in place
        self._entries: deque[list[float]] = deque()
        self._total = 0  # the calls in the entries, kept so that ``used`` is O(1) on the hot path

    def _prune(self, now: float) -> None:
        entries = self._entries
        while entries and entries[0][0] + self.period <= now:
            self._total -= int(entries.popleft()[1])

    def used(self, now: float) -> int:
        """Calls counted in the window that ends at ``now``."""
        self._prune(now)
        return self._total

    def entries(self, now: float) -> tuple[tuple[float, int], ...]:
        """The live entries at ``now``, oldest first."""
        self._prune(now)
        return tuple((entry[0], int(entry[1])) for entry in self._entries)

    def add(self, now: float, count: int = 1) -> None:
        """Count ``count`` calls started at ``now`` (never earlier than the last one added)."""
        if count < 1:
            return
        # No pruning here: every reading prunes first, and each call is added after one.
        entries = self._entries
        if entries and now - entries[-1][2] < self.granularity:
            last = entries[-1]
            last[0] = max(last[0], now)
            last[1] += count
        else:
            entries.append([now, float(count), now])
        self._total += count

    def raise_to(self, used: int, now: float) -> int:
        """Count calls started elsewhere so that at least ``used`` are in the window at ``now``
        (Xero saw calls the gateway did not); never lowers the count. Returns the calls added."""
        missing = used - self.used(now)
        if missing <= 0:
            return 0
        self.add(now, missing)
        return missing

    def starts(self, n: int, limit: int, now: float) -> list[float]:
        """The earliest times at which ``n`` further calls could start one after another, each
        as soon as the window allows, if nothing else were counted meanwhile."""
        self._prune(now)
        return list(_starts(self._entries, self._total, n, limit, self.period, now))

    def free_at(self, limit: int, now: float) -> float:
        """The earliest time (``now`` or later) at which one more call fits in the window."""
        return self.starts(1, limit, now)[0]


def _starts(
    entries: deque[list[float]], used: int, n: int, limit: int, period: float, now: float
) -> Iterator[float]:
    # The k-th call overall (counting the live ones first, oldest first) may start once the
    # (k - limit)-th has left the window: T[k] = max(now, T[k - limit] + period).
    future: list[float] = []
    index = 0  # entry holding the (k - limit)-th call, walked forward as k grows
    before = 0  # calls in the entries before ``index``
    for j in range(1, n + 1):
        k = used + j - limit
        if k < 1:
            start = now
        elif k <= used:
            while before + entries[index][1] < k:
                before += int(entries[index][1])
                index += 1
            start = max(now, entries[index][0] + period)
        else:
            start = max(now, future[k - used - 1] + period)
        future.append(start)
        yield start


@dataclass(frozen=True, kw_only=True)
class Counts:
    """What decides when one tenant's next calls may start: the limits, the tenant's day
    budget, its minute and day windows, the app's minute window, and the end of any block Xero
    asked for (the later of the tenant's and the app's; 0 for none)."""

    limits: Limits
    per_day: int
    minute: RollingCount
    day: RollingCount
    app: RollingCount
    blocked_until: float = 0.0


def start_times(counts: Counts, *, n: int, now: float) -> list[float]:
    """The earliest start of each of the tenant's next ``n`` calls, by the three windows and
    any block.

    It is a lower bound: calls in flight and other tenants' calls can only delay them.
    """
    if n < 1:
        return []
    limits = counts.limits
    by_minute = counts.minute.starts(n, limits.per_minute, now)
    by_day = counts.day.starts(n, counts.per_day, now)
    by_app = counts.app.starts(n, limits.app_per_minute, now)
    return [
        max(now, counts.blocked_until, a, b, c)
        for a, b, c in zip(by_minute, by_day, by_app, strict=True)
    ]


def may_start(counts: Counts, *, in_flight: int, now: float) -> bool:
    """Whether one more call of the tenant may start at ``now``, ``in_flight`` being in flight."""
    return (
        in_flight < counts.limits.in_flight
        and now >= counts.blocked_until
        and counts.minute.used(now) < counts.limits.per_minute
        and counts.day.used(now) < counts.per_day
        and counts.app.used(now) < counts.limits.app_per_minute
    )
