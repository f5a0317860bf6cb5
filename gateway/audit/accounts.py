"""Audit events of accounts: organisations, users, signing in and out, passwords, admin tokens
and gateway admins. Never a password, a code or a token."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.audit.event import Document, Event

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
