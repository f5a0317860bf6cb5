"""Audit events of second factors, the codes sent for them, re-sealing and reminders: never a
code, a secret or a device token, and destinations only masked."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.event import Event

# Second factors: what happened and how, never a code, a secret or a device token.


@dataclass(frozen=True, kw_only=True)
class MfaEnrolled(Event):
    kind = "mfa.enrolled"
    subject_field = "user_id"
    user_id: str
    org_id: str
    method: str
    role: str
    recovery_codes: int
    backup: str | None = None  # the backup method's kind (sms, email), if one was added
    backup_to: str | None = None  # its destination, masked


@dataclass(frozen=True, kw_only=True)
class MfaPassed(Event):
    kind = "mfa.passed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    method: str


@dataclass(frozen=True, kw_only=True)
class MfaFailed(Event):
    kind = "mfa.failed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    method: str
    reason: str
    stage: str  # "challenge", "enrolment" or "change" (of a method, in the settings)


@dataclass(frozen=True, kw_only=True)
class MfaLocked(Event):
    kind = "mfa.locked"
    subject_field = "user_id"
    user_id: str
    org_id: str
    failures: int
    until: float


@dataclass(frozen=True, kw_only=True)
class DeviceRemembered(Event):
    kind = "mfa.device_remembered"
    subject_field = "user_id"
    user_id: str
    org_id: str
    expires_at: float
    label: str


@dataclass(frozen=True, kw_only=True)
class RecoveryCodeUsed(Event):
    kind = "mfa.recovery_code_used"
    subject_field = "user_id"
    user_id: str
    org_id: str
    remaining: int


@dataclass(frozen=True, kw_only=True)
class MfaReset(Event):
    """A user's 2FA was reset: every factor, recovery code, remembered device, enrolment under
    way and session removed, so they set it up again at their next sign-in."""

    kind = "mfa.reset"
    subject_field = "user_id"
    user_id: str
    org_id: str
    via: str  # "team" (their principal), "support-cli", "support-api" or "support-console"
    by: str  # who reset: the principal's user id, or the support person's tool and name
    reason: str | None = None  # support: why, as told
    verified_by: str | None = None  # support: who checked the person's identity, and how
    checked_by: str | None = None  # team: the principal's fresh second factor (its method)
    factors: int = 0
    recovery_codes: int = 0
    devices: int = 0
    sessions: int = 0


# A signed-in user's own changes (settings page and JSON API), each after a fresh second factor.


@dataclass(frozen=True, kw_only=True)
class MfaPrimaryChanged(Event):
    """The user switched their primary method (or set it up again: a new app, a new phone)."""

    kind = "mfa.primary_changed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    method: str  # totp or sms
    previous: str | None  # the method it replaced
    to: str | None = None  # for sms, the new number, masked


@dataclass(frozen=True, kw_only=True)
class MfaBackupChanged(Event):
    """The user's backup method was proved by a code and put in place of the old one."""

    kind = "mfa.backup_changed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    method: str  # sms or email
    to: str  # masked
    previous: str | None  # the kind it replaced, None when there was none


@dataclass(frozen=True, kw_only=True)
class RecoveryCodesRegenerated(Event):
    """A new set of recovery codes; every earlier one stopped working."""

    kind = "mfa.recovery_codes_regenerated"
    subject_field = "user_id"
    user_id: str
    org_id: str
    codes: int
    unused_replaced: int  # unused codes of the old set that died


@dataclass(frozen=True, kw_only=True)
class DevicesForgotten(Event):
    """Remembered devices forgotten by their user: one (``label``) or all of them."""

    kind = "mfa.devices_forgotten"
    subject_field = "user_id"
    user_id: str
    org_id: str
    devices: int
    label: str | None = None  # the one device's label; None when all were forgotten


# Codes sent by SMS and email: never the code, the destination only masked.


@dataclass(frozen=True, kw_only=True)
class CodeSent(Event):
    kind = "mfa.code_sent"
    subject_field = "user_id"
    user_id: str
    org_id: str | None
    purpose: str
    channel: str  # sms or email
    to: str  # masked: +61 4•• ••• 678, a•••@example.com


@dataclass(frozen=True, kw_only=True)
class CodeSendFailed(Event):
    kind = "mfa.code_send_failed"
    subject_field = "user_id"
    user_id: str
    org_id: str | None
    purpose: str
    channel: str
    to: str
    reason: str  # the sender's account of it (never a credential)


@dataclass(frozen=True, kw_only=True)
class CodeSendLimited(Event):
    kind = "mfa.code_send_limited"
    subject_field = "user_id"
    user_id: str
    org_id: str | None
    purpose: str
    channel: str
    to: str
    limit: str  # user, destination or sms-global


@dataclass(frozen=True, kw_only=True)
class SealedValuesResealed(Event):
    """``rotate-key`` re-sealed values kept at rest with the current key."""

    kind = "keys.resealed"
    columns: tuple[str, ...]  # table.column of each column it went through
    resealed: int
    current: int


# Reminders before a policy's deadline, and principals' weekly summaries


@dataclass(frozen=True, kw_only=True)
class ReminderSent(Event):
    """A reminder (``kind`` "reminder", ``point`` such as "7d-2026-12-31") or a weekly summary
    ("summary", ``point`` an ISO week such as "2026-W49") was handed to the mail server."""

    kind = "reminder.sent"
    subject_field = "user_id"
    user_id: str
    org_id: str
    reminder: str
    policy_id: str
    point: str
    attempts: int
    to: str  # masked, as the logs show addresses


@dataclass(frozen=True, kw_only=True)
class ReminderFailed(Event):
    """A send failed: tried again at ``retry_at`` (epoch seconds), or given up (None)."""

    kind = "reminder.failed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    reminder: str
    policy_id: str
    point: str
    attempts: int
    retry_at: float | None
    reason: str  # the sender's account of it (never a credential)
