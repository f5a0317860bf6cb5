"""Why a second-factor step was refused: each refusal carries the message the user is shown."""

from __future__ import annotations

from gateway.mfa.attempts import GENERIC_FAILURE


class SecondFactorRefused(Exception):
    """A step was refused; ``message`` is for the user, ``reason`` for the log and audit."""

    reason = "refused"
    message = GENERIC_FAILURE
    retry_after = 0.0  # for a send a limit refused: the seconds until one may be sent

    def __init__(
        self, reason: str | None = None, *, message: str | None = None, retry_after: float = 0.0
    ) -> None:
        if reason is not None:
            self.reason = reason
        if message is not None:
            self.message = message
        self.retry_after = retry_after
        super().__init__(self.reason)


class CodeRefused(SecondFactorRefused):
    """A wrong, reused or malformed code, or the second factor is locked: one message for all."""


# What the set-up page asks once a step has run out, by the primary method being set up: it
# shows a new key for an authenticator app, and asks for the number again for text messages.
# A backup step runs out with the enrolment, which starts over at its primary method.
START_AGAIN = {
    "totp": "Scan the new code below, or type the new key.",
    "sms": "Enter your mobile number again to get a new code.",
}


class StepExpired(SecondFactorRefused):
    """The step was started longer ago than the policy's step lifetime: start it again.
    ``kind`` is the primary method of the enrolment that ran out (``totp`` or ``sms``)."""

    reason = "step-expired"

    def __init__(self, minutes: str, *, kind: str) -> None:
        self.minutes = minutes
        self.kind = kind
        super().__init__(
            message=(
                f"That took longer than {minutes}, so this step has started over for your"
                f" security. {START_AGAIN.get(kind, 'Start setting up again.')}"
            )
        )


class StepMissing(SecondFactorRefused):
    """A later step was asked for before an earlier one was done (or after it ran out)."""

    reason = "step-missing"
    message = "That step has not been started, or it ran out. Start setting up again."


class AlreadyEnrolled(SecondFactorRefused):
    """The user already has a primary factor; changing it is a separate, checked action."""

    reason = "already-enrolled"
    message = "Two-factor authentication is already set up for this account."


class NotEnrolled(SecondFactorRefused):
    """A change asked of a user who has no second factor yet: set one up first."""

    reason = "not-enrolled"
    message = "Two-factor authentication is not set up for this account yet: set it up first."


class DeviceUnknown(SecondFactorRefused):
    """No remembered device of this user has that id (another user's is not told apart)."""

    reason = "device-not-found"
    message = "None of your remembered devices has that id."


class BackupRefused(SecondFactorRefused):
    """The backup step could not go on: a number or address codes cannot go to, a send a
    limit refused or that failed (nothing spent), or a code that was not accepted."""

    reason = "backup-refused"


class SmsRefused(SecondFactorRefused):
    """The text-message step could not go on: a number codes cannot go to, a send a limit
    refused or that failed (nothing spent), or a code that was not accepted."""

    reason = "sms-refused"


class BackupRequired(SecondFactorRefused):
    """The user's role must add a backup method before the enrolment can finish."""

    reason = "backup-required"
    message = (
        "Your role needs a backup method, so you can get back in if you lose your phone: add a"
        " phone number or an email address to finish."
    )
