"""The email that tells a user of a change to their own second factors: what changed and when,
and what to do if it was not them. Never a code, a secret or a link; destinations masked."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from gateway.delivery.sender import Message
from gateway.secondfactor.changes import Changed
from gateway.store.records import User


def change_notice(user: User, changed: Changed, *, at: float, zone: str = "UTC") -> Message:
    """The notice of ``changed``, with its time in ``zone`` (the user's policy's, else UTC)."""
    when = dt.datetime.fromtimestamp(at, ZoneInfo(zone)).strftime("%d %B %Y at %H:%M %Z")
    body = (
        f"Hello {user.display_name},\n\n"
        f"The two-factor settings of your account ({user.email}) changed on {when}:\n\n"
        f"{changed.summary}\n\n"
        "It was done after a fresh second-factor check in a signed-in session. If it was not"
        " you, change your password straight away and tell your principal or our support"
        " team.\n"
    )
    return Message(
        to=user.email, subject="Your two-factor authentication settings changed", body=body
    )
