"""Judging repeated failures (sign-in and second factors): pure rules over a failure count."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.store.records import ThrottleState

# Past this many failures over the limit a slowing rule's wait stops doubling (2**32 s is
# far beyond any lockout anyway).
_MAX_DOUBLINGS = 32


@dataclass(frozen=True, kw_only=True)
class ThrottleRule:
    """``max_failures`` within ``window`` seconds lock the key for ``lockout`` seconds.

    With ``slowdown`` the rule slows instead of locking: the failure that reaches
    ``max_failures`` makes the key wait ``slowdown`` seconds, each further one twice as long
    as the last, up to ``lockout``; the count lasts until the key has been quiet (no failure,
    no wait) for ``window`` seconds. The state's ``window_started_at`` is then the time of
    the latest failure. A slowed key costs a guesser as much time at length as a locked one,
    but whoever shares it (the account's owner on a new device) waits seconds, not the
    whole lockout, after the first few guesses.
    """

    max_failures: int
    window: float
    lockout: float
    slowdown: float | None = None

    def __post_init__(self) -> None:
        if self.max_failures < 1 or self.window <= 0 or self.lockout <= 0:
            raise ValueError(f"invalid throttle rule: {self!r}")
        if self.slowdown is not None and not 0 < self.slowdown <= self.lockout:
            raise ValueError(f"invalid throttle rule: {self!r}")

    def locking(self) -> ThrottleRule:
        """The same limit, locking for ``lockout`` instead of slowing."""
        return ThrottleRule(
            max_failures=self.max_failures, window=self.window, lockout=self.lockout
        )


def retry_after(state: ThrottleState | None, now: float) -> float:
    """Seconds until the key may try again; 0 when it may try now."""
    if state is None or state.locked_until <= now:
        return 0.0
    return state.locked_until - now


def after_failure(state: ThrottleState | None, rule: ThrottleRule, now: float) -> ThrottleState:
    """The state after one more failure: a new window once the old one has passed."""
    if rule.slowdown is not None:
        return _after_slowed_failure(state, rule, rule.slowdown, now)
    if (
        state is None
        or now - state.window_started_at >= rule.window
        or (0 < state.locked_until <= now)
    ):
        failures, started = 1, now
    else:
        failures, started = state.failures + 1, state.window_started_at
    locked_until = now + rule.lockout if failures >= rule.max_failures else 0.0
    return ThrottleState(failures=failures, window_started_at=started, locked_until=locked_until)


def _after_slowed_failure(
    state: ThrottleState | None, rule: ThrottleRule, slowdown: float, now: float
) -> ThrottleState:
    quiet_since = max(state.window_started_at, state.locked_until) if state else 0.0
    failures = 1 if state is None or now - quiet_since >= rule.window else state.failures + 1
    over = failures - rule.max_failures
    locked_until = 0.0
    if over >= 0:
        locked_until = now + min(rule.lockout, slowdown * 2 ** min(over, _MAX_DOUBLINGS))
    return ThrottleState(failures=failures, window_started_at=now, locked_until=locked_until)


def book_attempt(
    state: ThrottleState | None, rule: ThrottleRule, now: float
) -> tuple[ThrottleState | None, bool]:
    """Count an attempt as a failure before it is judged, or refuse it while locked.

    Booking first, in the same write as the check, means concurrent attempts cannot all pass
    the check before any failure is recorded; a success hands the booking back (``refund``).
    Returns the new state and whether the attempt may go ahead.
    """
    if retry_after(state, now) > 0:
        return state, False
    return after_failure(state, rule, now), True


def refund(state: ThrottleState | None, rule: ThrottleRule) -> ThrottleState | None:
    """Take back one booked attempt (it succeeded, or was never judged)."""
    if state is None or state.failures <= 1:
        return None
    failures = state.failures - 1
    locked_until = state.locked_until if failures >= rule.max_failures else 0.0
    return ThrottleState(
        failures=failures, window_started_at=state.window_started_at, locked_until=locked_until
    )
