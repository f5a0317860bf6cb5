"""What Xero's rate headers say: the calls it has counted, and how long a 429 asks us to wait.

Pure readings of a response's status and headers, with time passed in; the governor applies
them. Xero's own counts only ever tighten the governor's (see ``used_of``).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from dataclasses import dataclass

DAY_REMAINING = "X-DayLimit-Remaining"
MINUTE_REMAINING = "X-MinLimit-Remaining"
APP_MINUTE_REMAINING = "X-AppMinLimit-Remaining"
PROBLEM = "X-Rate-Limit-Problem"
RETRY_AFTER = "Retry-After"

# The wait after a 429 that names none: one minute window, or a second when the problem is
# calls in flight (they end within seconds, and other calls of the tenant need not wait).
DEFAULT_RETRY_AFTER = 60.0
CONCURRENT_RETRY_AFTER = 1.0

# X-Rate-Limit-Problem values kept as they are; others read as "app" (naming an app-wide
# limit) or "other", so a metric labelled with the problem has few series.
PROBLEMS = ("minute", "day", "concurrent", "app", "other")


@dataclass(frozen=True, kw_only=True)
class Block:
    """A 429's request to wait: until ``until`` (absolute), for the tenant or the whole app;
    ``problem`` is one of ``PROBLEMS``."""

    app_wide: bool
    until: float
    problem: str


def used_of(limit: int, remaining: int | None) -> int | None:
    """The calls Xero has counted against ``limit`` when it says ``remaining`` are left (None
    when it did not say)."""
    if remaining is None:
        return None
    return max(0, limit - remaining)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict: look the name up without regard to case
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value


def _count(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit():
        return None
    return int(text)


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a ``Retry-After`` value asks for (delta-seconds or an HTTP date), or None if it
    is missing or unreadable. A date in the past asks for 0."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        return max(0.0, when.timestamp() - now)
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def remaining_counts(headers: Mapping[str, str]) -> tuple[int | None, int | None, int | None]:
    """The calls left this day, this minute and in the app's minute, as a response from Xero
    says (None where a header is missing or not a whole number)."""
    return (
        _count(_header(headers, DAY_REMAINING)),
        _count(_header(headers, MINUTE_REMAINING)),
        _count(_header(headers, APP_MINUTE_REMAINING)),
    )


def block_of(
    status: int, headers: Mapping[str, str], *, now: float, retry_after_cap: float
) -> Block | None:
    """What a response from Xero asks the caller to wait for: None but for a 429, which blocks
    the tenant, or the app when ``X-Rate-Limit-Problem`` names an app-wide limit, for its
    ``Retry-After`` (when it gives none, a minute, or a second for the 'concurrent' problem),
    never longer than ``retry_after_cap`` seconds."""
    if status != 429:
        return None
    problem = (_header(headers, PROBLEM) or "").strip().lower()
    seconds = retry_after_seconds(_header(headers, RETRY_AFTER), now)
    if seconds is None:
        seconds = CONCURRENT_RETRY_AFTER if problem == "concurrent" else DEFAULT_RETRY_AFTER
    app_wide = "app" in problem
    if problem not in PROBLEMS:
        problem = "app" if app_wide else "other"
    return Block(app_wide=app_wide, until=now + min(seconds, retry_after_cap), problem=problem)
