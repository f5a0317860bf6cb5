"""An enrolled user's own changes to their second factors: a new primary method (set up with the
enrolment's own steps and code checks, ``changing=True``, then put in place of the old one), a
new backup method proved by a code before it replaces the old, a new set of recovery codes,
and forgetting remembered devices. Each change is audited in its own transaction; the callers
check the step-up first and email the user what ``Changed.summary`` says."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from gateway.audit import (
    DevicesForgotten,
    MfaBackupChanged,
    MfaPrimaryChanged,
    RecoveryCodesRegenerated,
)
from gateway.clock import Clock
from gateway.mfa.destinations import (
    DestinationError,
    normalise_backup_mobile,
    normalise_email,
)
from gateway.mfa.recovery import issue_recovery_codes
from gateway.secondfactor.backup import (
    Backups,
    BackupSent,
    ProvedBackup,
    checked_code,
    send_step_code,
)
from gateway.secondfactor.challenge import Attempts, Challenges, Sealing
from gateway.secondfactor.devices import token_hash
from gateway.secondfactor.enrolment import Enrolments
from gateway.secondfactor.refusals import BackupRefused, DeviceUnknown, StepMissing
from gateway.secondfactor.rules import Rules
from gateway.secondfactor.sms import TextMessages
from gateway.sending.service import Channel, CodeRequest, CodeSender, masked
from gateway.signin.browsers import browser_summary
from gateway.store import Store
from gateway.store.factor_changes import ChangeRefusedError
from gateway.store.factors import NewFactor, RememberedDevice, factor_aad
from gateway.store.records import AuditEntry, User, new_id

CHANGE_BACKUP_PURPOSE = "change-backup"
METHOD_NAMES = {"totp": "an authenticator app", "sms": "text messages", "email": "email"}


def device_id(stored_hash: str) -> str:
    """The id a remembered device is shown and named by: derived one way from what the store
    keeps, so it is neither the cookie's token nor the hash the store looks the token up by."""
    digest = hashlib.sha256(b"mfa-device-id\x00" + stored_hash.encode()).hexdigest()
    return f"dev_{digest[:20]}"


@dataclass(frozen=True, kw_only=True)
class Changed:
    """A change made: ``summary`` says what, in a sentence for the user's email (masked
    destinations only, never a secret)."""

    what: str  # primary, backup, recovery-codes or devices
    summary: str
    method: str | None = None  # the primary or backup method now in place (totp, sms, email)


@dataclass(frozen=True, kw_only=True)
class DeviceView:
    """A remembered device as its user sees it; ``until`` is when it stops counting."""

    id: str
    label: str  # the User-Agent it was remembered with
    browser: str  # that, in a few words
    created_at: float
    last_used_at: float | None
    until: float
    current: bool  # the browser asking is this device


def _until(device: RememberedDevice, rules: Rules) -> float:
    return min(device.expires_at, device.created_at + rules.remember_device)


class Changes:
    def __init__(
        self,
        store: Store,
        sealer: Sealing,
        recovery_key: bytes,
        clock: Clock,
        attempts: Attempts,
        sending: CodeSender,
        challenges: Challenges,
        enrolments: Enrolments,
        text_messages: TextMessages,
        backups: Backups,
    ) -> None:
        self._backups = backups
        self._store = store
        self._sealer = sealer
        self._recovery_key = recovery_key
        self._clock = clock
        self._attempts = attempts
        self._sending = sending
        self._challenges = challenges
        self._enrolments = enrolments
        self._text_messages = text_messages

    # The primary method

    async def switch_primary(self, user: User, rules: Rules, entry: AuditEntry) -> Changed:
        """Put the primary method the step under way proved (``changing=True``) in place of
        the user's; StepMissing, StepExpired if that step is not there, SmsRefused if its
        phone has since become the backup phone."""
        await self._enrolments.guard(user, changing=True)
        pending, factor = await self._enrolments.confirmed_primary(user, rules)
        kinds = await self._store.factors.kinds(user.id)
        previous = [kind for kind, role in kinds if role == "primary"]
        to = None
        if factor.kind == "sms":
            phone = self._opened(user, factor)
            await self._text_messages.refuse_backup_phone(user, phone)
            to = masked(Channel.SMS, phone)
        event = MfaPrimaryChanged(
            user_id=user.id,
            org_id=user.org_id,
            method=factor.kind,
            previous=previous[0] if previous else None,
            to=to,
        )
        try:
            await self._store.factor_changes.replace_factor(
                user.id,
                factor,
                now=self._clock(),
                entry=entry,
                event=event,
                started_at=pending.started_at,
            )
        except ChangeRefusedError:
            raise StepMissing("change-refused") from None
        summary = (
            "Your sign-in codes now come from a new authenticator app."
            if to is None
            else f"Your sign-in codes now go by text message to {to}."
        )
        return Changed(what="primary", summary=summary, method=factor.kind)

    def _opened(self, user: User, factor: NewFactor) -> str:
        return self._sealer.open(factor.sealed, factor_aad(user.id, factor.id)).decode("utf-8")

    # The backup method

    async def send_backup_code(
        self, user: User, rules: Rules, *, kind: str, typed: str, client_addr: str | None
    ) -> BackupSent:
        """Send a code to the new backup phone or email ``typed`` (the rules of enrolment: a
        kind the policy accepts, a phone other than the primary one); BackupRefused saying why
        when it cannot go there or the send was refused (nothing spent)."""
        await self._enrolments.guard(user, changing=True)
        if kind not in self._backups.channels(rules):
            raise BackupRefused(
                "method-not-allowed", message="Choose a phone number or an email address."
            )
        channel = Channel(kind)
        try:
            if channel is Channel.SMS:
                primary = await self._challenges.primary_phone(user)
                destination = normalise_backup_mobile(typed, primary=primary)
            else:
                destination = normalise_email(typed)
        except DestinationError as error:
            raise BackupRefused("bad-destination", message=str(error)) from None
        request = CodeRequest(
            user_id=user.id,
            org_id=user.org_id,
            purpose=CHANGE_BACKUP_PURPOSE,
            channel=channel,
            destination=destination,
            lifetime=rules.code_lifetime,
            client_addr=client_addr,
        )
        return await send_step_code(self._sending, request, BackupRefused)

    async def confirm_backup(
        self, user: User, rules: Rules, code: str, entry: AuditEntry
    ) -> tuple[ProvedBackup, Changed]:
        """Check the code sent to the new backup; if it is right, put that backup in place of
        the old one. BackupRefused (a failed attempt) when it is not."""
        await self._enrolments.guard(user, changing=True)
        channel, destination = await checked_code(
            self._attempts,
            self._sending,
            user,
            rules,
            purpose=CHANGE_BACKUP_PURPOSE,
            code=code,
            method="backup",
            stage="change",
            refusal=BackupRefused,
        )
        if channel is Channel.SMS:
            try:
                normalise_backup_mobile(
                    destination, primary=await self._challenges.primary_phone(user)
                )
            except DestinationError as error:  # the primary became this phone meanwhile
                raise BackupRefused("bad-destination", message=str(error)) from None
        before = await self._challenges.backup_factor(user)
        factor_id = new_id("mfa")
        factor = NewFactor(
            id=factor_id,
            kind=channel.value,
            role="backup",
            sealed=self._sealer.seal(destination.encode("utf-8"), factor_aad(user.id, factor_id)),
            last_step=None,
        )
        to = masked(channel, destination)
        event = MfaBackupChanged(
            user_id=user.id,
            org_id=user.org_id,
            method=channel.value,
            to=to,
            previous=None if before is None else before[0].kind,
        )
        try:
            await self._store.factor_changes.replace_factor(
                user.id, factor, now=self._clock(), entry=entry, event=event
            )
        except ChangeRefusedError:
            raise StepMissing("change-refused") from None
        await self._attempts.succeeded(user.id)
        what = "phone number" if channel is Channel.SMS else "email address"
        summary = f"Your backup method is now the {what} {to}."
        changed = Changed(what="backup", summary=summary, method=channel.value)
        return ProvedBackup(kind=channel.value, to=to), changed

    # Recovery codes

    async def regenerate_recovery_codes(
        self, user: User, entry: AuditEntry
    ) -> tuple[tuple[str, ...], Changed]:
        """A new set of recovery codes, to be shown once; every earlier code stops working."""
        await self._enrolments.guard(user, changing=True)
        codes = issue_recovery_codes(key=self._recovery_key, user_id=user.id)

        def event(unused: int) -> RecoveryCodesRegenerated:
            return RecoveryCodesRegenerated(
                user_id=user.id, org_id=user.org_id, codes=len(codes.codes), unused_replaced=unused
            )

        try:
            await self._store.factor_changes.replace_recovery_codes(
                user.id, codes.digests, now=self._clock(), entry=entry, event=event
            )
        except ChangeRefusedError:
            raise StepMissing("change-refused") from None
        summary = "New recovery codes were made for your account; the earlier ones no longer work."
        return codes.codes, Changed(what="recovery-codes", summary=summary)

    # Remembered devices

    async def devices(
        self, user: User, rules: Rules, current_token: str | None
    ) -> list[DeviceView]:
        """The user's remembered devices that still count, the newest first."""
        now = self._clock()
        current = token_hash(current_token) if current_token else None
        return [
            DeviceView(
                id=device_id(device.token_hash),
                label=device.label,
                browser=browser_summary(device.label),
                created_at=device.created_at,
                last_used_at=device.last_used_at,
                until=_until(device, rules),
                current=current is not None and hmac.compare_digest(current, device.token_hash),
            )
            for device in await self._store.factors.user_devices(user.id)
            if _until(device, rules) > now
        ]

    async def forget_devices(
        self, user: User, entry: AuditEntry, device: str | None = None, *, session_hash: str
    ) -> tuple[int, Changed]:
        """Forget the user's remembered device ``device`` (an id from ``devices``), or every
        one when None; DeviceUnknown when none of theirs has that id. Returns how many went.
        Sessions a remembered device let in end, but the asking one (``session_hash``)."""
        stored = await self._store.factors.user_devices(user.id)
        label = None
        hashes: list[str] | None = None
        if device is not None:
            asked = device.encode("utf-8", "surrogatepass")  # whatever the path held
            found = [
                d for d in stored if hmac.compare_digest(device_id(d.token_hash).encode(), asked)
            ]
            if not found:
                raise DeviceUnknown()
            hashes, label = [found[0].token_hash], found[0].label

        def event(count: int) -> DevicesForgotten:
            return DevicesForgotten(user_id=user.id, org_id=user.org_id, devices=count, label=label)

        count = await self._store.factor_changes.forget_devices(
            user.id,
            hashes,
            keep_session=session_hash,
            now=self._clock(),
            entry=entry,
            event=event,
        )
        if device is not None and count == 0:
            raise DeviceUnknown()  # forgotten meanwhile
        summary = (
            f"The remembered device {browser_summary(label)} was forgotten: it asks for a second"
            " factor again."
            if label is not None
            else f"All your remembered devices ({count}) were forgotten: each asks for a second"
            " factor again."
        ) + " Any session a remembered device let in has been signed out."
        return count, Changed(what="devices", summary=summary)
