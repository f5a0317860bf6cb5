"""When a call to Xero is tried again, and after how long: a pure rule, randomness passed in.

GET, HEAD and requests carrying an ``Idempotency-Key`` are tried again after a 5xx or a
timeout, with jittered exponential backoff, up to a number of attempts and never past the
caller's deadline; other methods never are (Xero may have acted on them). A 429 means Xero
did not act, so any request is tried again once its ``Retry-After`` has passed, if that is
still within the deadline and the attempts.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from gateway.config import XeroProxyConfig

SAFE_METHODS = frozenset({"GET", "HEAD"})


class Outcome(enum.Enum):
    """What came of one attempt."""

    ANSWERED = "answered"  # a status Xero means (2xx to 4xx other than 429): pass it on
    RATE_LIMITED = "rate_limited"  # 429
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no answer in time, or the connection failed


def outcome_of(status: int | None) -> Outcome:
    """The outcome of an attempt that got ``status`` (None: it timed out or failed to connect)."""
    if status is None:
        return Outcome.TIMEOUT
    if status == 429:
        return Outcome.RATE_LIMITED
    if status >= 500:
        return Outcome.SERVER_ERROR
    return Outcome.ANSWERED


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """At most ``attempts`` tries in all; the n-th retry after a 5xx or timeout waits between
    half and all of ``backoff * 2**(n-1)`` seconds, never more than ``max_backoff``."""

    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff <= 0 or self.max_backoff < self.backoff:
            raise ValueError(f"invalid retry policy: {self!r}")

    @classmethod
    def from_config(cls, config: XeroProxyConfig) -> RetryPolicy:
        return cls(
            attempts=config.retry_attempts,
            backoff=config.retry_backoff,
            max_backoff=max(cls.max_backoff, config.retry_backoff),
        )


def may_repeat(method: str, *, idempotency_key: bool) -> bool:
    """Whether a request may be sent again after Xero may have acted on it."""
    return method.upper() in SAFE_METHODS or idempotency_key


def retry_delay(
    *,
    method: str,
    idempotency_key: bool,
    outcome: Outcome,
    attempt: int,
    retry_after: float | None,
    now: float,
    deadline: float,
    policy: RetryPolicy,
    random: Callable[[], float],
) -> float | None:
    """Seconds to wait before trying again after attempt number ``attempt`` (1 for the first)
    ended in ``outcome``, or None to give the caller this answer.

    ``retry_after`` is the wait Xero asked for (already capped), if any; ``random`` returns a
    float in [0, 1) and spreads the backoff so that callers do not retry in step.
    """
    if outcome is Outcome.ANSWERED or attempt >= policy.attempts:
        return None
    if outcome is Outcome.RATE_LIMITED:
        if retry_after is None:
            return None
        delay = retry_after
    else:
        if not may_repeat(method, idempotency_key=idempotency_key):
            return None
        ceiling = min(policy.max_backoff, policy.backoff * 2 ** (attempt - 1))
        delay = ceiling / 2 + random() * ceiling / 2
        if retry_after is not None:
            delay = max(delay, retry_after)
    if now + delay > deadline:
        return None
    return delay
