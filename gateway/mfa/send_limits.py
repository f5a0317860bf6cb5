"""Judging code sends against their limits: per user, per destination, and for all SMS at once.

Pure rules over the store's ``ThrottleState``, with the time passed in, so the throttle table
keeps the counts (a restart does not reset them). A send is booked before it is made, in the
same compare-and-swap write as the check, so parallel requests cannot outrun a limit; a send
that fails is handed back (``refund_send``): a failed send spends nothing.

The state is read as: ``failures`` sends booked in the window that began at
``window_started_at`` and ends at ``locked_until``. The window's end is always set, so the
store's purge (which keeps rows whose ``locked_until`` is still ahead) never forgets a count
that still matters.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from gateway.store.records import ThrottleState


class SendLimit(enum.Enum):
    """Which limit a refused send ran into; the value is the audit trail's name for it."""

    USER = "user"
    DESTINATION = "destination"
    SMS_GLOBAL = "sms-global"


@dataclass(frozen=True, kw_only=True)
class SendRule:
    """At most ``max_sends`` sends in a window of ``window`` seconds from the first of them."""

    max_sends: int
    window: float

    def __post_init__(self) -> None:
        if self.max_sends < 1 or self.window <= 0:
            raise ValueError(f"invalid send rule: {self!r}")


def user_send_key(user_id: str) -> str:
    """The throttle key of a user's sends (beside the ``login:`` and ``mfa:`` keys)."""
    return f"send:user:{user_id}"


def destination_send_key(destination_tag: str) -> str:
    """The throttle key of sends to one destination, named by a keyed hash of it (the table
    never holds a phone number or an address)."""
    return f"send:to:{destination_tag}"


SMS_GLOBAL_KEY = "send:sms:all"


def _window(state: ThrottleState | None, rule: SendRule, now: float) -> tuple[int, float]:
    """(sends booked, window start) as they count at ``now``: nothing once the window is over."""
    if (
        state is None
        or now >= state.window_started_at + rule.window
        or now < state.window_started_at
    ):
        return 0, now
    return state.failures, state.window_started_at


def wait_before_send(state: ThrottleState | None, rule: SendRule, now: float) -> float:
    """Seconds until another send may be booked under ``rule``; 0 when one may be now."""
    sends, started = _window(state, rule, now)
    return 0.0 if sends < rule.max_sends else started + rule.window - now


def book_send(
    state: ThrottleState | None, rule: SendRule, now: float
) -> tuple[ThrottleState | None, bool]:
    """Count one more send, or refuse it while the window is full.

    Returns the new state and whether the send may go ahead (the state is unchanged when not).
    """
    if wait_before_send(state, rule, now) > 0:
        return state, False
    sends, started = _window(state, rule, now)
    return ThrottleState(
        failures=sends + 1, window_started_at=started, locked_until=started + rule.window
    ), True


def refund_send(state: ThrottleState | None) -> ThrottleState | None:
    """Hand back one booked send (it failed, or another limit refused it)."""
    if state is None or state.failures <= 1:
        return None
    return ThrottleState(
        failures=state.failures - 1,
        window_started_at=state.window_started_at,
        locked_until=state.locked_until,
    )


def _minutes(seconds: float) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def limited_message(limit: SendLimit, wait: float) -> str:
    """What the user is told when a limit refuses a send (never which number is counted)."""
    if limit is SendLimit.USER:
        return f"You have asked for too many codes. Wait {_minutes(wait)}, then send again."
    if limit is SendLimit.DESTINATION:
        return (
            "Too many codes have been sent there recently. "
            f"Wait {_minutes(wait)}, then send again, or use another method."
        )
    return (
        "Text messages cannot be sent just now. "
        f"Try again in {_minutes(wait)}, or use another method."
    )
