"""A phone as the primary method: the enrolment step that proves a mobile number with a code
sent to it (kept sealed with the enrolment under way until ``Enrolments.finish`` saves it),
and the code sent to it at sign-in or for a step-up (judged by ``Challenges.verify``)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.clock import Clock
from gateway.mfa.destinations import DestinationError, normalise_mobile
from gateway.secondfactor.backup import BackupSent, checked_code, send_step_code
from gateway.secondfactor.challenge import SMS_CHALLENGE_PURPOSE, Attempts, Challenges, Sealing
from gateway.secondfactor.enrolment import Enrolments
from gateway.secondfactor.refusals import SmsRefused, StepExpired, StepMissing
from gateway.secondfactor.rules import Rules, duration_text
from gateway.sending.service import Channel, CodeRequest, CodeSender, masked, sent_message
from gateway.store import Store
from gateway.store.factors import PendingEnrolment, pending_phone_aad
from gateway.store.records import User

ENROL_SMS_PURPOSE = "enrol-sms"
NO_PHONE = "No phone is set up for this account. Use your backup method or a recovery code."
SAME_AS_BACKUP = (
    "That number is your backup phone: enter another mobile number, or change your backup"
    " method first."
)


@dataclass(frozen=True, kw_only=True)
class PhoneStep:
    """Where the phone step of the enrolment under way stands, as its page shows it."""

    expires_at: float
    proved: str | None = None  # the confirmed number, masked
    sent: BackupSent | None = None  # a code on its way and still usable
    notice: str | None = None  # why the step started over, if it did


class TextMessages:
    """Sends the code that proves a primary phone and checks it, counting each check as a
    second-factor attempt; sends the sign-in code to it. A failed or refused send spends
    nothing."""

    def __init__(
        self,
        store: Store,
        sealer: Sealing,
        clock: Clock,
        attempts: Attempts,
        sending: CodeSender,
        challenges: Challenges,
        enrolments: Enrolments,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._clock = clock
        self._attempts = attempts
        self._sending = sending
        self._challenges = challenges
        self._enrolments = enrolments

    def offered(self, rules: Rules) -> bool:
        """Whether a phone may be the primary method: the policy accepts it and this gateway
        can send text messages."""
        return "sms" in rules.primary_methods and self._sending.available(Channel.SMS)

    # Enrolment

    async def start(
        self, user: User, rules: Rules, *, notice: str | None = None, changing: bool = False
    ) -> PhoneStep:
        """Begin (or begin again) setting up a phone as the primary method: the first second
        factor, or (``changing``) in place of the user's primary method."""
        await self._enrolments.guard(user, changing=changing)
        if not self.offered(rules):
            raise StepMissing("method-not-allowed")
        now = self._clock()
        pending = await self._store.factors.start(
            user.id,
            now=now,
            expires_at=now + rules.step_lifetime,
            totp_sealed=None,
            primary_kind="sms",
        )
        return PhoneStep(expires_at=pending.expires_at, notice=notice)

    async def _pending(self, user: User, rules: Rules, changing: bool) -> PendingEnrolment:
        """The phone enrolment under way, in time (StepExpired, StepMissing if not)."""
        await self._enrolments.guard(user, changing=changing)
        pending = await self._store.factors.pending(user.id)
        if pending is None or pending.primary_kind != "sms":
            raise StepMissing()
        if self._clock() >= pending.expires_at:
            raise StepExpired(duration_text(rules.step_lifetime), kind="sms")
        return pending

    async def step(self, user: User, rules: Rules, *, changing: bool = False) -> PhoneStep:
        """The phone step under way, for its page; one that ran out starts over (and says
        why). StepMissing if no phone step was started."""
        try:
            pending = await self._pending(user, rules, changing)
        except StepExpired as expired:
            return await self.start(user, rules, notice=expired.message, changing=changing)
        if pending.phone_sealed is not None:
            phone = self._sealer.open(pending.phone_sealed, pending_phone_aad(user.id)).decode()
            return PhoneStep(expires_at=pending.expires_at, proved=masked(Channel.SMS, phone))
        live = await self._sending.live_code(user_id=user.id, purpose=ENROL_SMS_PURPOSE)
        sent = None
        if live is not None:
            sent = self._still_on_its_way(live.destination, live.expires_at)
        return PhoneStep(expires_at=pending.expires_at, sent=sent)

    def _still_on_its_way(self, phone: str, expires_at: float) -> BackupSent:
        left = max(60.0, expires_at - self._clock())
        return BackupSent(
            kind=Channel.SMS.value,
            destination=phone,
            message=sent_message(Channel.SMS, phone, left),
            expires_at=expires_at,
        )

    def _request(
        self, user: User, rules: Rules, purpose: str, phone: str, client_addr: str | None
    ) -> CodeRequest:
        return CodeRequest(
            user_id=user.id,
            org_id=user.org_id,
            purpose=purpose,
            channel=Channel.SMS,
            destination=phone,
            lifetime=rules.code_lifetime,
            client_addr=client_addr,
        )

    async def send(
        self,
        user: User,
        rules: Rules,
        typed: str,
        *,
        client_addr: str | None = None,
        changing: bool = False,
    ) -> BackupSent:
        """Send a code to the mobile number ``typed``; SmsRefused saying why when it is
        malformed, premium-rate or not a mobile, the user's backup phone, or the send was
        refused (nothing spent)."""
        pending = await self._pending(user, rules, changing)
        if pending.phone_sealed is not None:
            raise StepMissing("confirmed-already")
        try:
            phone = normalise_mobile(typed)
        except DestinationError as error:
            raise SmsRefused("bad-destination", message=str(error)) from None
        await self.refuse_backup_phone(user, phone)
        request = self._request(user, rules, ENROL_SMS_PURPOSE, phone, client_addr)
        return await send_step_code(self._sending, request, SmsRefused)

    async def refuse_backup_phone(self, user: User, phone: str) -> None:
        """SmsRefused when ``phone`` (E.164) is the user's backup phone: the two must differ."""
        backup = await self._challenges.backup_factor(user)
        if backup is not None and backup[0].kind == "sms" and backup[1] == phone:
            raise SmsRefused("bad-destination", message=SAME_AS_BACKUP)

    async def begin(
        self,
        user: User,
        rules: Rules,
        typed: str,
        *,
        client_addr: str | None = None,
        changing: bool = False,
    ) -> tuple[PhoneStep, BackupSent]:
        """Start (again) setting up the phone ``typed`` and send it a code, in one call (the
        JSON API's): a number codes cannot go to is refused before anything starts."""
        try:
            phone = normalise_mobile(typed)
        except DestinationError as error:
            raise SmsRefused("bad-destination", message=str(error)) from None
        await self.refuse_backup_phone(user, phone)
        step = await self.start(user, rules, changing=changing)
        sent = await self.send(user, rules, typed, client_addr=client_addr, changing=changing)
        return step, sent

    async def confirm(self, user: User, rules: Rules, code: str, *, changing: bool = False) -> str:
        """Check the code sent to the phone; if it is right, keep the number with the
        enrolment under way and return it masked. SmsRefused (counted as a failed attempt)
        when it is not."""
        pending = await self._pending(user, rules, changing)
        if pending.phone_sealed is not None:
            phone = self._sealer.open(pending.phone_sealed, pending_phone_aad(user.id)).decode()
            return masked(Channel.SMS, phone)
        _, phone = await checked_code(
            self._attempts,
            self._sending,
            user,
            rules,
            purpose=ENROL_SMS_PURPOSE,
            code=code,
            method="sms",
            stage="change" if changing else "enrolment",
            refusal=SmsRefused,
        )
        sealed = self._sealer.seal(phone.encode("utf-8"), pending_phone_aad(user.id))
        if not await self._store.factors.confirm_phone(
            user.id, started_at=pending.started_at, now=self._clock(), sealed=sealed
        ):
            raise StepMissing("restarted")
        await self._attempts.succeeded(user.id)
        return masked(Channel.SMS, phone)

    # The challenge

    async def send_challenge(
        self, user: User, rules: Rules, *, again: bool, client_addr: str | None = None
    ) -> BackupSent:
        """Send a sign-in code to the user's phone; judged by ``Challenges.verify(method=
        "sms")``. Unless ``again``, a code sent before that can still be used is not sent
        anew (a page opened twice sends one). SmsRefused when there is no phone, or the send
        was limited or failed (nothing spent)."""
        phone = await self._challenges.primary_phone(user)
        if phone is None:
            raise SmsRefused("no-sms-factor", message=NO_PHONE)
        if not again:
            live = await self._sending.live_code(user_id=user.id, purpose=SMS_CHALLENGE_PURPOSE)
            if live is not None and live.destination == phone:
                return self._still_on_its_way(phone, live.expires_at)
        request = self._request(user, rules, SMS_CHALLENGE_PURPOSE, phone, client_addr)
        return await send_step_code(self._sending, request, SmsRefused)
