"""Backup methods: the enrolment step that adds a phone number or an email address, proved by
a code sent to it and kept sealed with the enrolment under way until ``Enrolments.finish``
saves it; and the code sent to it at sign-in (judged by ``Challenges.verify``)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import Clock
from gateway.mfa.attempts import GENERIC_FAILURE
from gateway.mfa.codes import CodeVerdict
from gateway.mfa.destinations import (
    SAME_AS_PRIMARY,
    DestinationError,
    normalise_backup_mobile,
    normalise_email,
)
from gateway.secondfactor.challenge import (
    BACKUP_CHALLENGE_PURPOSE,
    Attempts,
    Challenges,
    Sealing,
)
from gateway.secondfactor.refusals import (
    BackupRefused,
    SecondFactorRefused,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.rules import Rules, duration_text
from gateway.sending.service import Channel, CodeRequest, CodeSender, masked
from gateway.store import Store
from gateway.store.factors import PendingEnrolment, pending_backup_aad, pending_phone_aad
from gateway.store.records import User

BACKUP_PURPOSE = "enrol-backup"

VERDICT_MESSAGES = {
    CodeVerdict.EXPIRED: "That code has expired. Send a new code and type the new one.",
    CodeVerdict.USED: "That code has been used already. Send a new code and type the new one.",
}
NO_BACKUP = (
    "No backup method is set up for this account. Use your authenticator app or a recovery code."
)
NO_CODE = "No code was sent for this step, or it ran out. Send a code first."


async def send_step_code(
    sending: CodeSender, request: CodeRequest, refusal: type[SecondFactorRefused]
) -> BackupSent:
    """Send the step's code; ``refusal`` saying why (limited, failed: nothing spent) if not."""
    outcome = await sending.send_code(request)
    if not outcome.sent:
        raise refusal(
            f"send-{outcome.status.value}",
            message=outcome.message,
            retry_after=outcome.retry_after,
        )
    return BackupSent(
        kind=request.channel.value,
        destination=request.destination,
        message=outcome.message,
        expires_at=outcome.expires_at,
    )


async def checked_code(
    attempts: Attempts,
    sending: CodeSender,
    user: User,
    rules: Rules,
    *,
    purpose: str,
    code: str,
    method: str,
    stage: str,
    refusal: type[SecondFactorRefused],
) -> tuple[Channel, str]:
    """Count the attempt, then judge ``code`` against the one sent for the step ``purpose``:
    where the code went (its channel and destination) when it is accepted, else ``refusal``
    saying why (a failed attempt)."""
    await attempts.book(user, rules.attempts, method=method, stage=stage)
    check = await sending.check_code(user_id=user.id, purpose=purpose, typed=code)
    if check.accepted and check.channel is not None and check.destination is not None:
        return check.channel, check.destination
    reason = "no-code" if check.verdict is None else check.verdict.value
    await attempts.failed(user, method=method, reason=reason, stage=stage)
    if check.verdict is None:
        raise refusal(reason, message=NO_CODE)
    raise refusal(reason, message=VERDICT_MESSAGES.get(check.verdict, GENERIC_FAILURE))


@dataclass(frozen=True, kw_only=True)
class BackupSent:
    """A code is on its way to the backup method (or, for a phone that is the primary
    method, to it): what the page tells the user."""

    kind: str  # sms or email
    destination: str  # as normalised, for "send again"
    message: str  # "We sent a code to +61 4•• ••• 678. It expires in 10 minutes."
    expires_at: float | None


@dataclass(frozen=True, kw_only=True)
class ProvedBackup:
    """The backup method a code proved, kept with the enrolment under way."""

    kind: str
    to: str  # masked


class Backups:
    """Sends the code that proves a backup method and checks it, counting each check as a
    second-factor attempt (``Attempts``). A failed or refused send spends nothing."""

    def __init__(
        self,
        store: Store,
        sealer: Sealing,
        clock: Clock,
        attempts: Attempts,
        sending: CodeSender,
        challenges: Challenges,
    ) -> None:
        self._challenges = challenges
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._attempts = attempts
        self._sending = sending

    def channels(self, rules: Rules) -> tuple[str, ...]:
        """The backup methods the policy accepts that this gateway can send codes by."""
        return tuple(
            kind
            for kind in ("sms", "email")
            if kind in rules.backup_methods and self._sending.available(Channel(kind))
        )

    async def _confirmed(self, user: User, rules: Rules) -> PendingEnrolment:
        """The enrolment under way, its primary method confirmed and in time."""
        pending = await self._store.factors.pending(user.id)
        if pending is None or not pending.confirmed:
            raise StepMissing("not-confirmed")
        if self._clock() >= pending.expires_at:
            raise StepExpired(duration_text(rules.step_lifetime), kind=pending.primary_kind)
        return pending

    async def proved(self, user: User, rules: Rules) -> ProvedBackup | None:
        """The backup method proved for the enrolment under way, if one was."""
        pending = await self._confirmed(user, rules)
        if pending.backup_kind is None or pending.backup_sealed is None:
            return None
        destination = self._sealer.open(pending.backup_sealed, pending_backup_aad(user.id))
        channel = Channel(pending.backup_kind)
        return ProvedBackup(kind=channel.value, to=masked(channel, destination.decode("utf-8")))

    async def send(
        self, user: User, rules: Rules, *, kind: str, typed: str, client_addr: str | None = None
    ) -> BackupSent:
        """Send a code to the backup number or address ``typed``; BackupRefused saying why
        when it is malformed, premium-rate, the primary phone, or the send was refused."""
        pending = await self._confirmed(user, rules)
        if kind not in self.channels(rules):
            raise BackupRefused(
                "method-not-allowed", message="Choose a phone number or an email address."
            )
        channel = Channel(kind)
        try:
            if channel is Channel.SMS:
                destination = normalise_backup_mobile(typed, primary=self._phone(user, pending))
            else:
                destination = normalise_email(typed)
        except DestinationError as error:
            raise BackupRefused("bad-destination", message=str(error)) from None
        return await self._send(user, rules, BACKUP_PURPOSE, channel, destination, client_addr)

    def _phone(self, user: User, pending: PendingEnrolment) -> str | None:
        """The primary phone (E.164) of the enrolment under way, if its method is a phone."""
        if pending.phone_sealed is None:
            return None
        return self._sealer.open(pending.phone_sealed, pending_phone_aad(user.id)).decode()

    async def _send(
        self,
        user: User,
        rules: Rules,
        purpose: str,
        channel: Channel,
        destination: str,
        client_addr: str | None,
    ) -> BackupSent:
        return await send_step_code(
            self._sending,
            CodeRequest(
                user_id=user.id,
                org_id=user.org_id,
                purpose=purpose,
                channel=channel,
                destination=destination,
                lifetime=rules.code_lifetime,
                client_addr=client_addr,
            ),
            BackupRefused,
        )

    async def enrolled(self, user: User) -> ProvedBackup | None:
        """The user's backup method, as a page names it (masked), if one is set up."""
        backup = await self._challenges.backup_factor(user)
        if backup is None:
            return None
        channel = Channel(backup[0].kind)
        return ProvedBackup(kind=channel.value, to=masked(channel, backup[1]))

    async def send_challenge(
        self, user: User, rules: Rules, *, client_addr: str | None = None
    ) -> BackupSent:
        """Send a sign-in code to the user's backup method ("use my backup method"); it is
        judged by ``Challenges.verify(method="backup")``. BackupRefused when there is no
        backup, or the send was limited or failed (nothing spent)."""
        backup = await self._challenges.backup_factor(user)
        if backup is None:
            raise BackupRefused("no-backup-factor", message=NO_BACKUP)
        factor, destination = backup
        channel = Channel(factor.kind)
        return await self._send(
            user, rules, BACKUP_CHALLENGE_PURPOSE, channel, destination, client_addr
        )

    async def confirm(self, user: User, rules: Rules, code: str) -> ProvedBackup:
        """Check the code sent to the backup method; if it is right, keep that method with the
        enrolment under way. BackupRefused (counted as a failed attempt) when it is not."""
        pending = await self._confirmed(user, rules)
        channel, destination = await checked_code(
            self._attempts,
            self._sending,
            user,
            rules,
            purpose=BACKUP_PURPOSE,
            code=code,
            method="backup",
            stage="enrolment",
            refusal=BackupRefused,
        )
        if channel is Channel.SMS and destination == self._phone(user, pending):
            # Only a code sent before the primary phone was proved can get here.
            await self._attempts.failed(user, method="backup", reason="primary", stage="enrolment")
            raise BackupRefused("same-as-primary", message=SAME_AS_PRIMARY)
        sealed = self._sealer.seal(destination.encode("utf-8"), pending_backup_aad(user.id))
        if not await self._store.factors.set_backup(
            user.id,
            started_at=pending.started_at,
            now=self._clock(),
            kind=channel.value,
            sealed=sealed,
        ):
            raise StepMissing("restarted")
        await self._attempts.succeeded(user.id)
        return ProvedBackup(kind=channel.value, to=masked(channel, destination))
