"""Judging failed second-factor attempts: one count per user across every method, pure.

``attempts.max_failed`` consecutive failures lock the second factor for ``attempts.lockout``;
a success clears the count. This is the gateway's one failure throttle (:mod:`gateway.throttle`)
with a window that never ends, so failures count however far apart they are: each attempt is
booked as a failure before it is judged (:func:`~gateway.throttle.book_attempt`, in the same
write as the check), so parallel guesses cannot outrun the limit, and
:func:`~gateway.throttle.retry_after` says how long the lock lasts. Sending a code is not an
attempt: a failed send spends nothing. The state is the store's ``ThrottleState``, so the
throttle table keeps it (a restart does not reset it). Users see ``GENERIC_FAILURE`` whatever
the cause; the precise cause goes to the log and the audit trail.
"""

from __future__ import annotations

import math

from gateway.policy.decision import EffectivePolicy
from gateway.store.records import ThrottleState
from gateway.throttle import ThrottleRule

GENERIC_FAILURE = (
    "That code was not accepted. Check it and try again; after too many tries, "
    "wait a few minutes before trying again."
)


def attempt_rule(*, max_failed: int, lockout: float) -> ThrottleRule:
    """``max_failed`` consecutive failures lock the second factor for ``lockout`` seconds."""
    return ThrottleRule(max_failures=max_failed, window=math.inf, lockout=lockout)


def policy_attempt_rule(policy: EffectivePolicy) -> ThrottleRule:
    """The rule of the strictest policy that applies to the user."""
    return attempt_rule(
        max_failed=policy.max_failed_attempts, lockout=policy.lockout.total_seconds()
    )


def attempt_key(user_id: str) -> str:
    """The throttle key of a user's second-factor count (beside the sign-in ``login:`` keys)."""
    return f"mfa:user:{user_id}"


def after_success(state: ThrottleState | None) -> ThrottleState | None:
    """A second factor was accepted: the count starts over."""
    return None
