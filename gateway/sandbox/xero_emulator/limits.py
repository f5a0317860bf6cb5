"""Xero's API limits per tenant and per app, counted in fixed windows; time is passed in.

Per tenant: 5 calls in flight, 60 a minute, a daily budget; per app: 10,000 a minute. Each
tenant's windows start at an offset of their own (Xero's reset at different times per
tenant). A call over a limit is refused and counts against nothing; ``Retry-After`` comes
with the windowed limits (minute, day, app minute), not with the concurrent one.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field

CONCURRENT_LIMIT = 5
MINUTE_LIMIT = 60
APP_MINUTE_LIMIT = 10_000
DAY = 24 * 3600


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """Whether a call may go ahead; ``problem`` names the limit it hit (X-Rate-Limit-Problem)."""

    problem: str | None
    retry_after: int | None
    headers: dict[str, str]


def _offset(tenant_id: str, period: int) -> int:
    return int.from_bytes(hashlib.sha256(tenant_id.encode()).digest()[:4], "big") % period


@dataclass
class _Window:
    start: float = -math.inf
    count: int = 0

    def roll(self, now: float, period: int, offset: int) -> None:
        start = math.floor((now - offset) / period) * period + offset
        if start != self.start:
            self.start, self.count = start, 0

    def retry_after(self, now: float, period: int) -> int:
        return max(1, math.ceil(self.start + period - now))


@dataclass
class Limits:
    """The counts behind every limit; ``admit`` before a call, ``release`` after it."""

    concurrent_limit: int = CONCURRENT_LIMIT
    minute_limit: int = MINUTE_LIMIT
    app_minute_limit: int = APP_MINUTE_LIMIT
    in_flight: Counter[str] = field(default_factory=Counter)
    _minute: dict[str, _Window] = field(default_factory=dict)
    _day: dict[str, _Window] = field(default_factory=dict)
    _app: dict[str, _Window] = field(default_factory=dict)

    def admit(self, *, tenant_id: str, client_id: str, day_limit: int, now: float) -> Verdict:
        minute = self._minute.setdefault(tenant_id, _Window())
        day = self._day.setdefault(tenant_id, _Window())
        app = self._app.setdefault(client_id, _Window())
        minute.roll(now, 60, _offset(tenant_id, 60))
        day.roll(now, DAY, _offset(tenant_id, DAY))
        app.roll(now, 60, 0)
        problem: str | None = None
        retry_after: int | None = None
        if self.in_flight[tenant_id] >= self.concurrent_limit:
            problem = "concurrent"  # Xero documents Retry-After for the windowed limits only
        elif app.count >= self.app_minute_limit:
            problem, retry_after = "appminute", app.retry_after(now, 60)
        elif minute.count >= self.minute_limit:
            problem, retry_after = "minute", minute.retry_after(now, 60)
        elif day.count >= day_limit:
            problem, retry_after = "day", day.retry_after(now, DAY)
        else:
            self.in_flight[tenant_id] += 1
            minute.count += 1
            day.count += 1
            app.count += 1
        headers = {
            "X-DayLimit-Remaining": str(max(0, day_limit - day.count)),
            "X-MinLimit-Remaining": str(max(0, self.minute_limit - minute.count)),
            "X-AppMinLimit-Remaining": str(max(0, self.app_minute_limit - app.count)),
        }
        if problem is not None:
            headers["X-Rate-Limit-Problem"] = problem
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        return Verdict(problem=problem, retry_after=retry_after, headers=headers)

    def release(self, tenant_id: str) -> None:
        self.in_flight[tenant_id] -= 1
