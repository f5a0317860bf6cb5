"""Judging failed second-factor attempts: one count per user across every method, pure.

``attempts.max_failed`` consecutive failures lock the second factor for ``attempts.lockout``;
a success clears the count. Each attempt is booked as a failure before it is judged (in the
same write as the check), so parallel guesses cannot outrun the limit. Sending a code is not
an attempt: a failed send spends nothing. The state is the store's ``ThrottleState``, so the
throttle table keeps it (a restart does not reset it). Users see ``GENERIC_FAILURE``
whatever the cause; the precise cause goes to the log and the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.policy.decision import EffectivePolicy
from gateway.store.records import ThrottleState

GENERIC_FAILURE = (
    "That code was not accepted. Check it and try again; after too many tries, "
    "wait a few minutes before trying again."
)


@dataclass(frozen=True, kw_only=True)
class AttemptRule:
    """``max_failed`` consecutive failures lock the second factor for ``lockout`` seconds."""

    max_failed: int
    lockout: float

    def __post_init__(self) -> None:
        if self.max_failed < 1 or self.lockout <= 0:
            raise ValueError(f"invalid attempt rule: {self!r}")

    @classmethod
    def of(cls, policy: EffectivePolicy) -> AttemptRule:
        """The rule of the strictest policy that applies to the user."""
        return cls(max_failed=policy.max_failed_attempts, lockout=policy.lockout.total_seconds())


def attempt_key(user_id: str) -> str:
    """The throttle key of a user's second-factor count (beside the sign-in ``login:`` keys)."""
    return f"mfa:user:{user_id}"


def locked_for(state: ThrottleState | None, now: float) -> float:
    """Seconds the user's second factor stays locked; 0 when an attempt may be made."""
    if state is None or state.locked_until <= now:
        return 0.0
    return state.locked_until - now


def book_attempt(
    state: ThrottleState | None, rule: AttemptRule, now: float
) -> tuple[ThrottleState | None, bool]:
    """Count an attempt as a failure before judging it, or refuse it while locked.

    Returns the new state and whether the attempt may be judged. A lock that has run out
    starts a fresh count.
    """
    if locked_for(state, now) > 0:
        return state, False
    if state is None or 0 < state.locked_until <= now:
        failures, started = 1, now
    else:
        failures, started = state.failures + 1, state.window_started_at
    locked_until = now + rule.lockout if failures >= rule.max_failed else 0.0
    new = ThrottleState(failures=failures, window_started_at=started, locked_until=locked_until)
    return new, True


def after_success(state: ThrottleState | None) -> ThrottleState | None:
    """A second factor was accepted: the count starts over."""
    return None
