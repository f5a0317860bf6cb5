"""The reminder and weekly summary emails: plain text, with the days left, the deadline in the
policy's time zone and where to set up 2FA; never a secret."""

from __future__ import annotations

from gateway.delivery.sender import Message
from gateway.policy.decision import deadline_words
from gateway.reminders.due import ReminderDue, SummaryDue, TeamRow

SET_UP_PATH = "/_gateway/mfa/enrol"


def set_up_url(base_url: str) -> str:
    """Where to set up 2FA: the gateway's public address and the path, or the path alone."""
    return base_url.rstrip("/") + SET_UP_PATH


def _days(days: int) -> str:
    return {0: "today is the last day", 1: "1 day left"}.get(days, f"{days} days left")


def reminder_message(due: ReminderDue, *, base_url: str = "") -> Message:
    when = deadline_words(due.deadline, due.timezone)
    name = due.recipient.name or due.recipient.email
    body = (
        f"Hello {name},\n\n"
        f"Your account must have two-factor authentication (2FA) set up by {when}"
        f" ({_days(due.days_left)}). After that, you cannot sign in until it is set up.\n\n"
        "Setting it up takes a few minutes: sign in, then follow the steps at\n"
        f"{set_up_url(base_url)}\n\n"
        "You need an authenticator app on your phone (or a phone that receives text messages,"
        " where allowed).\n\n"
        "You get this email because you have not set up 2FA yet; once you have, the reminders"
        " stop.\n"
    )
    subject = f"Set up two-factor authentication: {_days(due.days_left)}"
    return Message(to=due.recipient.email, subject=subject, body=body)


def _row(row: TeamRow) -> str:
    who = f"{row.name} <{row.email}>" if row.name else row.email
    if row.enrolled:
        state = "set up"
    elif row.days_left is None:
        state = "not set up (not required)"
    elif row.days_left < 0:
        state = "NOT set up: blocked, the deadline has passed"
    else:
        state = f"NOT set up ({_days(row.days_left)})"
    return f"- {who}: {state}"


def summary_message(due: SummaryDue, *, base_url: str = "") -> Message:
    when = deadline_words(due.deadline, due.timezone)
    done = sum(1 for row in due.team if row.enrolled)
    behind = [row for row in due.team if not row.enrolled and row.days_left is not None]
    name = due.recipient.name or due.recipient.email
    lines = "\n".join(_row(row) for row in due.team)
    body = (
        f"Hello {name},\n\n"
        f"Your team's two-factor authentication (2FA) this week: {done} of {len(due.team)}"
        f" have set it up; {len(behind)} still must, by {when} ({_days(due.days_left)}).\n"
        "Whoever has not set it up by then cannot sign in until they do.\n\n"
        f"{lines}\n\n"
        f"Each of them can set it up after signing in, at {set_up_url(base_url)}\n"
        "This summary comes each Monday while someone in your team still has to set up 2FA.\n"
    )
    subject = f"Your team's 2FA: {len(behind)} still to set up, {_days(due.days_left)}"
    return Message(to=due.recipient.email, subject=subject, body=body)
