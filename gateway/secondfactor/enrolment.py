"""Enrolment: start an authenticator app and confirm it with a code (or a phone, see ``sms``),
add a backup method (see ``backup``), finish with recovery codes.

Nothing counts as enrolled until ``finish`` saves the factors and the recovery codes in one
transaction; a step left longer than the policy's step lifetime starts over with a new seed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gateway.audit import MfaEnrolled
from gateway.clock import Clock
from gateway.mfa.destinations import masked_email, masked_phone
from gateway.mfa.recovery import issue_recovery_codes
from gateway.mfa.totp import grouped_key, matched_step, new_secret, provisioning_uri, qr_svg
from gateway.policy import Enrolment
from gateway.secondfactor.challenge import Attempts, Sealing
from gateway.secondfactor.refusals import (
    AlreadyEnrolled,
    BackupRequired,
    CodeRefused,
    NotEnrolled,
    StepExpired,
    StepMissing,
)
from gateway.secondfactor.rules import Rules, duration_text
from gateway.store import Store
from gateway.store.factors import (
    FinishError,
    NewFactor,
    PendingEnrolment,
    factor_aad,
    pending_backup_aad,
    pending_phone_aad,
    pending_totp_aad,
)
from gateway.store.records import AuditEntry, User, new_id

NOT_ENROLLED = Enrolment(enrolled=False, has_backup=False, methods=frozenset())


def enrolment_of(factors: Iterable[tuple[str, str]]) -> Enrolment:
    """The user's 2FA set-up as a decision reads it, from (kind, role) of each factor."""
    primary = frozenset(kind for kind, role in factors if role == "primary")
    backup = any(role == "backup" for _, role in factors)
    if not primary:
        return NOT_ENROLLED
    return Enrolment(enrolled=True, has_backup=backup, methods=primary)


@dataclass(frozen=True, kw_only=True)
class TotpSetup:
    """What the authenticator-app page shows: never stored in this form, never in a URL."""

    uri: str  # otpauth://totp/…, for the QR code and the link
    issuer: str  # the name the app shows beside the account ([security] totp_issuer)
    key: str  # the secret in groups of four
    qr_svg: str
    expires_at: float
    notice: str | None = None  # why the step started over, if it did


class Enrolments:
    def __init__(
        self,
        store: Store,
        sealer: Sealing,
        recovery_key: bytes,
        clock: Clock,
        issuer: str,
        attempts: Attempts,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._recovery_key = recovery_key
        self._clock = clock
        self._issuer = issuer
        self._attempts = attempts

    async def enrolment(self, user_id: str) -> Enrolment:
        return enrolment_of(await self._store.factors.kinds(user_id))

    async def refuse_if_enrolled(self, user: User) -> None:
        await self.guard(user, changing=False)

    async def guard(self, user: User, *, changing: bool) -> None:
        """A first enrolment is for a user with no second factor (AlreadyEnrolled otherwise);
        a change of the primary method (``changing``) for one who has it (NotEnrolled)."""
        enrolled = (await self.enrolment(user.id)).enrolled
        if enrolled and not changing:
            raise AlreadyEnrolled()
        if changing and not enrolled:
            raise NotEnrolled()

    async def start_totp(
        self, user: User, rules: Rules, *, notice: str | None = None, changing: bool = False
    ) -> TotpSetup:
        """Begin (or begin again) setting up an authenticator app, with a new seed: as the
        first second factor, or (``changing``) in place of the user's primary method."""
        await self.guard(user, changing=changing)
        if "totp" not in rules.primary_methods:
            raise StepMissing("method-not-allowed")
        now = self._clock()
        secret = new_secret()
        sealed = self._sealer.seal(secret.encode("ascii"), pending_totp_aad(user.id))
        pending = await self._store.factors.start(
            user.id, now=now, expires_at=now + rules.step_lifetime, totp_sealed=sealed
        )
        return self._setup(user, secret, pending, notice)

    async def totp_setup(self, user: User, rules: Rules, *, changing: bool = False) -> TotpSetup:
        """The set-up page of the enrolment under way; a step that ran out starts over (and
        says why). StepMissing if no authenticator step was started."""
        await self.guard(user, changing=changing)
        pending = await self._store.factors.pending(user.id)
        if pending is None or pending.totp_sealed is None:
            raise StepMissing()
        if self._clock() >= pending.expires_at:
            return await self.start_totp(
                user,
                rules,
                notice=StepExpired(duration_text(rules.step_lifetime), kind="totp").message,
                changing=changing,
            )
        return self._setup(user, self._secret(user, pending), pending, None)

    def _setup(
        self, user: User, secret: str, pending: PendingEnrolment, notice: str | None
    ) -> TotpSetup:
        uri = provisioning_uri(secret, account=user.email, issuer=self._issuer)
        return TotpSetup(
            uri=uri,
            issuer=self._issuer,
            key=grouped_key(secret),
            qr_svg=qr_svg(uri),
            expires_at=pending.expires_at,
            notice=notice,
        )

    def _secret(self, user: User, pending: PendingEnrolment) -> str:
        assert pending.totp_sealed is not None
        return self._sealer.open(pending.totp_sealed, pending_totp_aad(user.id)).decode("ascii")

    async def _current(self, user: User, rules: Rules, *, kind: str | None) -> PendingEnrolment:
        """The enrolment under way (of primary method ``kind``, if given), in time;
        StepExpired if it ran out (the set-up page then starts it over)."""
        pending = await self._store.factors.pending(user.id)
        if pending is None or (kind is not None and pending.primary_kind != kind):
            raise StepMissing()
        if self._clock() >= pending.expires_at:
            raise StepExpired(duration_text(rules.step_lifetime), kind=pending.primary_kind)
        return pending

    async def confirm_totp(
        self, user: User, code: str, rules: Rules, *, changing: bool = False
    ) -> None:
        """Check that the app makes the right codes. CodeRefused for a wrong code (counted
        like a failed challenge), StepExpired or StepMissing when the step is not there."""
        await self.guard(user, changing=changing)
        pending = await self._current(user, rules, kind="totp")
        if pending.totp_confirmed:
            return
        stage = "change" if changing else "enrolment"
        await self._attempts.book(user, rules.attempts, method="totp", stage=stage)
        now = self._clock()
        step = matched_step(self._secret(user, pending), code, now=now)
        if step is None:
            await self._attempts.failed(user, method="totp", reason="wrong-code", stage=stage)
            raise CodeRefused("wrong-code")
        if not await self._store.factors.confirm_totp(
            user.id, started_at=pending.started_at, step=step, now=now
        ):
            raise StepMissing("restarted")
        await self._attempts.succeeded(user.id)

    def _backup_factor(self, user: User, pending: PendingEnrolment) -> NewFactor | None:
        """The proved backup method as a factor, its destination sealed to its own row."""
        if pending.backup_kind is None or pending.backup_sealed is None:
            return None
        destination = self._sealer.open(pending.backup_sealed, pending_backup_aad(user.id))
        backup_id = new_id("mfa")
        return NewFactor(
            id=backup_id,
            kind=pending.backup_kind,
            role="backup",
            sealed=self._sealer.seal(destination, factor_aad(user.id, backup_id)),
            last_step=None,
        )

    def _primary_factor(self, user: User, pending: PendingEnrolment) -> NewFactor:
        """The confirmed app's seed or proved phone number, sealed to its own factor row."""
        factor_id = new_id("mfa")
        aad = factor_aad(user.id, factor_id)
        if pending.primary_kind == "sms":
            assert pending.phone_sealed is not None
            phone = self._sealer.open(pending.phone_sealed, pending_phone_aad(user.id))
            return NewFactor(
                id=factor_id,
                kind="sms",
                role="primary",
                sealed=self._sealer.seal(phone, aad),
                last_step=None,
            )
        return NewFactor(
            id=factor_id,
            kind="totp",
            role="primary",
            sealed=self._sealer.seal(self._secret(user, pending).encode("ascii"), aad),
            # The code that confirmed the app cannot be used again to sign in.
            last_step=pending.totp_step,
        )

    def _masked_backup(self, user: User, backup: NewFactor) -> str:
        destination = self._sealer.open(backup.sealed, factor_aad(user.id, backup.id)).decode()
        return masked_phone(destination) if backup.kind == "sms" else masked_email(destination)

    async def confirmed_primary(
        self, user: User, rules: Rules
    ) -> tuple[PendingEnrolment, NewFactor]:
        """The step under way, its primary method proved and in time, and that method as the
        factor to save (StepMissing, StepExpired if it is not there)."""
        pending = await self._current(user, rules, kind=None)
        if not pending.confirmed:
            raise StepMissing("not-confirmed")
        return pending, self._primary_factor(user, pending)

    async def finish(self, user: User, rules: Rules, entry: AuditEntry) -> tuple[str, ...]:
        """Save the confirmed authenticator app or phone as the user's primary factor, with the
        backup method a code proved (if any) and ten new recovery codes, in one transaction;
        returns the codes, to be shown once. BackupRequired when the user's role needs a
        backup and none was proved."""
        await self.refuse_if_enrolled(user)
        pending, factor = await self.confirmed_primary(user, rules)
        backup = self._backup_factor(user, pending)
        if backup is None and rules.backup_required(user.role):
            raise BackupRequired()
        codes = issue_recovery_codes(key=self._recovery_key, user_id=user.id)
        event = MfaEnrolled(
            user_id=user.id,
            org_id=user.org_id,
            method=factor.kind,
            role="primary",
            recovery_codes=len(codes.codes),
            backup=None if backup is None else backup.kind,
            backup_to=None if backup is None else self._masked_backup(user, backup),
        )
        try:
            await self._store.factors.finish(
                user.id,
                started_at=pending.started_at,
                now=self._clock(),
                factor=factor,
                recovery_digests=codes.digests,
                entry=entry,
                event=event,
                backup=backup,
            )
        except FinishError:
            if (await self.enrolment(user.id)).enrolled:
                raise AlreadyEnrolled() from None
            raise StepMissing("finish-refused") from None
        return codes.codes
