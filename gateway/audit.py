"""What the audit trail records: one frozen dataclass per kind of event, and how each is stored.

An event says what happened; who asked, when and from where travel beside it (the store's
``record`` and ``record_change`` take them). Each event is stored as its ``kind`` string, two
columns (``subject``, ``org_id``) and a JSON detail: the field named by ``subject_field`` is
the subject, a field ``org_id`` the organisation, and every other field a key of the detail.
The kind strings are written here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

Document = Mapping[str, Any]  # a JSON object, as an event's before/after


@dataclass(frozen=True, kw_only=True)
class Event:
    """A thing that happened, for the audit trail; subclasses set ``kind`` and their fields."""

    kind: ClassVar[str]
    subject_field: ClassVar[str | None] = None  # which field is stored as the subject


@dataclass(frozen=True, kw_only=True)
class AuditRow:
    """An event as the store writes it: the kind, the two columns and the JSON detail."""

    kind: str
    subject: str | None
    org_id: str | None
    detail: dict[str, Any]


def event_row(event: Event) -> AuditRow:
    """The one way an event becomes what the store writes (tuples become JSON arrays)."""
    detail: dict[str, Any] = {}
    for f in dataclasses.fields(event):
        if f.name not in (event.subject_field, "org_id"):
            value = getattr(event, f.name)
            detail[f.name] = list(value) if isinstance(value, tuple) else value
    subject = getattr(event, event.subject_field) if event.subject_field else None
    return AuditRow(
        kind=event.kind, subject=subject, org_id=getattr(event, "org_id", None), detail=detail
    )


# Organisations and users


@dataclass(frozen=True, kw_only=True)
class OrgAdded(Event):
    kind = "org.added"
    subject_field = "org_id"
    org_id: str
    name: str


@dataclass(frozen=True, kw_only=True)
class UserAdded(Event):
    kind = "user.added"
    subject_field = "user_id"
    user_id: str
    org_id: str
    email: str
    role: str


@dataclass(frozen=True, kw_only=True)
class UserDisabled(Event):
    kind = "user.disabled"
    subject_field = "user_id"
    user_id: str
    org_id: str


@dataclass(frozen=True, kw_only=True)
class UserEnabled(Event):
    kind = "user.enabled"
    subject_field = "user_id"
    user_id: str
    org_id: str


@dataclass(frozen=True, kw_only=True)
class UsersImported(Event):
    """A CSV import; each account it added also has its own ``user.added``."""

    kind = "user.imported"
    count: int
    users: tuple[Document, ...]  # {"id", "email", "org_id"} of each account added


# Signing in and out


@dataclass(frozen=True, kw_only=True)
class LoginThrottled(Event):
    kind = "login.throttled"
    typed: str  # a keyed hash of what was typed as the email, never the text itself


@dataclass(frozen=True, kw_only=True)
class LoginFailed(Event):
    kind = "login.failed"
    subject_field = "account_id"
    account_id: str | None  # the account named, when there is one
    reason: str
    typed: str


@dataclass(frozen=True, kw_only=True)
class LoginSucceeded(Event):
    kind = "login.succeeded"
    subject_field = "user_id"
    user_id: str
    org_id: str


@dataclass(frozen=True, kw_only=True)
class LoggedOut(Event):
    kind = "logout"
    subject_field = "user_id"
    user_id: str
    org_id: str


@dataclass(frozen=True, kw_only=True)
class PromptDismissed(Event):
    kind = "mfa.prompt_dismissed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    policies: tuple[str, ...]
    dismissals: int
    cap: int | None


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
    stage: str  # "challenge" or "enrolment"


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
    via: str  # "team" (their principal), "support-cli" or "support-api"
    by: str  # who reset: the principal's user id, or the support person's tool and name
    reason: str | None = None  # support: why, as told
    verified_by: str | None = None  # support: who checked the person's identity, and how
    checked_by: str | None = None  # team: the principal's fresh second factor (its method)
    factors: int = 0
    recovery_codes: int = 0
    devices: int = 0
    sessions: int = 0


# Policies: every change carries the documents before and after, and the new revision.


@dataclass(frozen=True, kw_only=True)
class PolicyChanged(Event):
    subject_field = "policy_id"
    policy_id: str
    before: Document | None
    after: Document | None
    version: int


@dataclass(frozen=True, kw_only=True)
class PolicyCreated(PolicyChanged):
    kind = "policy.created"


@dataclass(frozen=True, kw_only=True)
class PolicyReplaced(PolicyChanged):
    kind = "policy.replaced"


@dataclass(frozen=True, kw_only=True)
class PolicyEnabled(PolicyChanged):
    kind = "policy.enabled"


@dataclass(frozen=True, kw_only=True)
class PolicyDisabled(PolicyChanged):
    kind = "policy.disabled"


@dataclass(frozen=True, kw_only=True)
class PolicyDeleted(PolicyChanged):
    kind = "policy.deleted"


# Xero tenants linked to organisations


@dataclass(frozen=True, kw_only=True)
class TenantLinked(Event):
    kind = "org.tenant_linked"
    subject_field = "tenant_id"
    tenant_id: str
    org_id: str
    before: Document | None
    after: Document
    name: str
    country_code: str


@dataclass(frozen=True, kw_only=True)
class TenantUnlinked(Event):
    kind = "org.tenant_unlinked"
    subject_field = "tenant_id"
    tenant_id: str
    org_id: str
    before: Document
    after: Document


# Admin API tokens


@dataclass(frozen=True, kw_only=True)
class AdminTokenCreated(Event):
    kind = "admin_token.created"
    subject_field = "token_id"
    token_id: str
    name: str
    scopes: tuple[str, ...]
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class AdminTokenRevoked(Event):
    kind = "admin_token.revoked"
    subject_field = "token_id"
    token_id: str


# Gateway admin accounts (people; the tokens above are for machines). Never a password or
# a code.


@dataclass(frozen=True, kw_only=True)
class AdminAdded(Event):
    kind = "admin.added"
    subject_field = "admin_id"
    admin_id: str
    email: str
    name: str


@dataclass(frozen=True, kw_only=True)
class AdminDisabled(Event):
    kind = "admin.disabled"
    subject_field = "admin_id"
    admin_id: str


@dataclass(frozen=True, kw_only=True)
class AdminSignedIn(Event):
    kind = "admin.signed_in"
    subject_field = "admin_id"
    admin_id: str


@dataclass(frozen=True, kw_only=True)
class AdminSignInFailed(Event):
    kind = "admin.sign_in_failed"
    subject_field = "admin_id"
    admin_id: str | None  # the admin named, when there is one
    reason: str  # unknown-admin, disabled, bad-password, bad-code, replayed-code, throttled
    typed: str  # a keyed hash of what was typed as the email, never the text itself


@dataclass(frozen=True, kw_only=True)
class AdminSignedOut(Event):
    kind = "admin.signed_out"
    subject_field = "admin_id"
    admin_id: str


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


# Xero token custody: never a token, only which grant and who allowed it.


@dataclass(frozen=True, kw_only=True)
class XeroTokensRefreshed(Event):
    """A refresh of a grant's token set, whatever came of it."""

    kind = "xero.tokens_refreshed"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    outcome: str  # refreshed, invalid_grant, unavailable, rejected, lost_race
    allowed_by: str  # the session or service key whose request triggered it
    version: int  # the token-set version after the refresh (unchanged unless refreshed)


@dataclass(frozen=True, kw_only=True)
class XeroGrantNeedsReconnect(Event):
    """Xero refused a grant's refresh token: its connections wait for a new consent."""

    kind = "xero.needs_reconnect"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    tenants: tuple[str, ...]
    notified: tuple[str, ...]  # user ids of the principals told by email


@dataclass(frozen=True, kw_only=True)
class XeroConnected(Event):
    """A principal connected Xero tenants: a new consent stored as a grant."""

    kind = "xero.connected"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    connected_by: str  # the user id of the principal who consented
    tenants: tuple[str, ...]  # the tenant ids of the consent
    countries: tuple[str, ...]  # each tenant's Organisation.CountryCode, in the same order
    replaced: tuple[str, ...]  # earlier grants whose connections this consent took over


@dataclass(frozen=True, kw_only=True)
class XeroDisconnected(Event):
    """A grant was disconnected: its refresh token revoked at Xero and its tenants unlinked."""

    kind = "xero.disconnected"
    subject_field = "grant_id"
    grant_id: str
    org_id: str
    tenants: tuple[str, ...]  # tenant ids whose link (source xero) ended
    deleted_at_xero: tuple[str, ...]  # connection ids deleted at Xero before the revocation


@dataclass(frozen=True, kw_only=True)
class XeroConnectionRemoved(Event):
    """Xero no longer lists a connection (it was disconnected on Xero's side)."""

    kind = "xero.connection_removed"
    subject_field = "connection_id"
    connection_id: str
    org_id: str
    grant_id: str
    tenant_id: str


@dataclass(frozen=True, kw_only=True)
class ServiceKeyCreated(Event):
    kind = "service_key.created"
    subject_field = "key_id"
    key_id: str
    org_id: str
    name: str


@dataclass(frozen=True, kw_only=True)
class ServiceKeyRevoked(Event):
    kind = "service_key.revoked"
    subject_field = "key_id"
    key_id: str
    org_id: str


# Xero webhooks: the app could not be given an event, however often it was tried.


@dataclass(frozen=True, kw_only=True)
class WebhookAbandoned(Event):
    kind = "xero.webhook_abandoned"
    subject_field = "event_id"
    event_id: str  # the gateway's id of the event (X-Gateway-Webhook-Id)
    tenant_id: str
    event_category: str
    event_type: str
    resource_id: str
    attempts: int
    error: str  # what the last attempt met


# Passwords: forgotten (a reset link by email) and changed. No token or password is ever kept.


@dataclass(frozen=True, kw_only=True)
class PasswordResetRequested(Event):
    """Someone asked for a reset link; ``account_id`` is None for an address with no account
    (or a disabled one), and no link was made then."""

    kind = "password.reset_requested"
    subject_field = "account_id"
    account_id: str | None
    typed: str  # a keyed hash of the address typed, never the text itself


@dataclass(frozen=True, kw_only=True)
class PasswordResetThrottled(Event):
    kind = "password.reset_throttled"
    typed: str  # a keyed hash of the address typed


@dataclass(frozen=True, kw_only=True)
class PasswordResetSent(Event):
    kind = "password.reset_sent"
    subject_field = "user_id"
    user_id: str
    org_id: str
    to: str  # masked


@dataclass(frozen=True, kw_only=True)
class PasswordResetSendFailed(Event):
    """The link's email could not be sent; the link was retired."""

    kind = "password.reset_send_failed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    to: str  # masked
    reason: str


@dataclass(frozen=True, kw_only=True)
class PasswordResetRefused(Event):
    """A reset link was presented and refused: unknown, used, replaced by a newer one, or
    expired."""

    kind = "password.reset_refused"
    subject_field = "user_id"
    user_id: str | None
    reason: str


@dataclass(frozen=True, kw_only=True)
class PasswordReset(Event):
    """A password was set anew by a reset link; every session of the user ended."""

    kind = "password.reset"
    subject_field = "user_id"
    user_id: str
    org_id: str
    sessions_ended: int


@dataclass(frozen=True, kw_only=True)
class PasswordChanged(Event):
    """A signed-in user changed their password; their other sessions ended."""

    kind = "password.changed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    sessions_ended: int


@dataclass(frozen=True, kw_only=True)
class PasswordChangeFailed(Event):
    kind = "password.change_failed"
    subject_field = "user_id"
    user_id: str
    org_id: str
    reason: str  # wrong-password, throttled


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


# Every kind the gateway records, by its kind string.
EVENTS: Mapping[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        OrgAdded,
        UserAdded,
        UserDisabled,
        UserEnabled,
        UsersImported,
        LoginThrottled,
        LoginFailed,
        LoginSucceeded,
        LoggedOut,
        PromptDismissed,
        MfaEnrolled,
        MfaPassed,
        MfaFailed,
        MfaLocked,
        DeviceRemembered,
        RecoveryCodeUsed,
        MfaReset,
        PolicyCreated,
        PolicyReplaced,
        PolicyEnabled,
        PolicyDisabled,
        PolicyDeleted,
        TenantLinked,
        TenantUnlinked,
        AdminTokenCreated,
        AdminTokenRevoked,
        AdminAdded,
        AdminDisabled,
        AdminSignedIn,
        AdminSignInFailed,
        AdminSignedOut,
        CodeSent,
        CodeSendFailed,
        CodeSendLimited,
        SealedValuesResealed,
        XeroTokensRefreshed,
        XeroGrantNeedsReconnect,
        XeroConnected,
        XeroDisconnected,
        XeroConnectionRemoved,
        ServiceKeyCreated,
        ServiceKeyRevoked,
        WebhookAbandoned,
        PasswordResetRequested,
        PasswordResetThrottled,
        PasswordResetSent,
        PasswordResetSendFailed,
        PasswordResetRefused,
        PasswordReset,
        PasswordChanged,
        PasswordChangeFailed,
        ReminderSent,
        ReminderFailed,
    )
}
