"""The bodies of the user JSON API: sign-in, the user's 2FA state, enrolment (with the backup
method) and the challenge."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schema.instants import Instant

# What the user must do next before the app lets them through.
Next = Literal["none", "challenge", "enrolment"]
ChallengeMethod = Literal["totp", "sms", "backup", "recovery"]
# How a check passed, as X-Gateway-Mfa-Method tells the app: a backup is its kind.
PassedMethod = Literal["totp", "sms", "email", "recovery"]
BackupKind = Literal["sms", "email"]
BACKUP_KINDS: tuple[BackupKind, ...] = ("sms", "email")
# Where to send a sign-in code: "sms", the user's primary phone; "backup", the user's backup
# phone or email.
SendMethod = Literal["sms", "backup"]

MAX_EMAIL = 320
MAX_PASSWORD = 1024
MAX_CODE = 64
MAX_DESTINATION = 256
MAX_PHONE = 64


class SignInBody(BaseModel):
    """The first factor."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=MAX_EMAIL)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class CodeBody(BaseModel):
    """A code from the authenticator app, to confirm it."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(max_length=MAX_CODE)


class BackupBody(BaseModel):
    """The backup method to prove: a mobile number (``sms``; must differ from a primary phone)
    or an email address (``email``); a code is sent to it."""

    model_config = ConfigDict(extra="forbid")

    kind: BackupKind
    destination: str = Field(
        min_length=1,
        max_length=MAX_DESTINATION,
        description="A mobile number (0412 345 678 or +61 412 345 678) or an email address.",
    )


class SendBody(BaseModel):
    """Where to send a sign-in code: the primary phone (``sms``) or the backup (``backup``)."""

    model_config = ConfigDict(extra="forbid")

    method: SendMethod = Field(
        description=(
            "sms: text the code to the user's phone (the primary method); backup: send it to"
            " the backup phone or email (use my backup method)."
        )
    )
    again: bool = Field(
        default=False,
        description=(
            "sms only: send a new code even if the one sent before can still be used (else"
            " that one is not sent again). A backup code is sent anew on every call."
        ),
    )


class ChallengeBody(BaseModel):
    """A second-factor check: a code by ``method``, and whether to remember this browser."""

    model_config = ConfigDict(extra="forbid")

    method: ChallengeMethod = Field(
        description=(
            "totp: a code from the app; sms or backup: the code sent by POST"
            " /_gateway/api/mfa/challenge/send with that method; recovery: one of the"
            " recovery codes."
        )
    )
    code: str = Field(max_length=MAX_CODE)
    remember_device: bool = False


class PhoneBody(BaseModel):
    """A mobile number to text codes to: an Australian one as 0412 345 678, any other with +
    and its country code."""

    model_config = ConfigDict(extra="forbid")

    phone: str = Field(min_length=1, max_length=MAX_PHONE)


class SessionState(BaseModel):
    """Where a session stands after a call that changed it. The session id was rotated, so
    ``csrf_token`` replaces the one held before."""

    next: Next = Field(
        description=(
            "none: the app lets this session through; challenge: POST /_gateway/api/mfa/"
            "challenge; enrolment: set up a second factor (POST /_gateway/api/mfa/enrol/totp)."
        )
    )
    mfa_verified: bool
    csrf_token: str = Field(description="Send it as X-CSRF-Token on state-changing calls.")


class UserInfo(BaseModel):
    id: str
    email: str
    display_name: str


class OrganisationInfo(BaseModel):
    id: str
    name: str


class MfaState(BaseModel):
    """The user's second factor and this session's standing."""

    enrolled: bool
    methods: list[str] = Field(description="The primary methods set up, e.g. totp.")
    has_backup: bool
    verified: bool = Field(description="This session passed a second factor.")
    method: str | None = Field(
        default=None, description="How it last passed: totp, recovery or device."
    )
    verified_at: Instant | None = None
    outcome: Literal["allow", "prompt", "verify", "enrol"] = Field(
        description="What the gateway does with this session's requests to the app now."
    )
    reason: str
    deadline: Instant | None = Field(
        default=None, description="When 2FA becomes required, if a policy asks for it."
    )
    allowed_methods: list[str] = Field(
        description=(
            "The primary methods the user can set up here: those the policy accepts, sms only"
            " where this gateway can send text messages."
        )
    )
    remembered_device_expires_at: Instant | None = Field(
        default=None, description="When this browser's remembered device runs out, if it is one."
    )


class Me(BaseModel):
    """The signed-in user, their organisation and role, their 2FA state, and the CSRF token."""

    user: UserInfo
    organisation: OrganisationInfo
    role: str
    mfa: MfaState
    next: Next
    csrf_token: str = Field(description="Send it as X-CSRF-Token on state-changing calls.")


class TotpEnrolment(BaseModel):
    """An authenticator app to set up: show the QR code, or the key for typing in."""

    uri: str = Field(description="otpauth://totp/… (also a link that opens the app on a phone).")
    key: str = Field(description="The secret in groups of four, for manual entry.")
    qr_svg: str = Field(description="The QR code of uri, as an SVG document.")
    expires_at: Instant = Field(description="Confirm before this, or the step starts over.")


class CodeSent(BaseModel):
    """A code is on its way (by text message or email): type it in before it runs out."""

    kind: BackupKind = Field(description="How it was sent: sms or email.")
    sent_to: str = Field(description="Where it went, masked: +61 ••• ••• 678, a•••@example.com.")
    message: str = Field(description="What to tell the user, with how long the code works.")
    code_expires_at: Instant | None = Field(default=None, description="When the code runs out.")


class SmsEnrolment(CodeSent):
    """A phone being set up as the primary method: confirm the code sent to it."""

    expires_at: Instant = Field(description="Confirm before this, or the step starts over.")
    next_step: str


class Confirmed(BaseModel):
    """The step is confirmed; ``next_step`` is the call that comes next."""

    next_step: str
    backup: Literal["required", "offered", "none", "proved"] = Field(
        default="none",
        description=(
            "required: prove a backup method (POST /_gateway/api/mfa/enrol/backup) before"
            " finishing; offered: prove one, or skip it by finishing now; none: no backup"
            " method can be set up here; proved: a backup method is proved."
        ),
    )
    backup_kinds: list[BackupKind] = Field(
        default_factory=list, description="The backup methods codes can be sent by here."
    )


class RecoveryCodes(SessionState):
    """Enrolment is saved: the ten recovery codes, shown this once and never again."""

    recovery_codes: list[str]


class ChallengePassed(SessionState):
    """The second factor passed; ``remembered_device_expires_at`` if this browser was
    remembered; ``recovery_codes_left`` after a recovery code."""

    method: PassedMethod = Field(
        description="How it passed, as X-Gateway-Mfa-Method says: a backup by its kind."
    )
    remembered_device_expires_at: Instant | None = None
    recovery_codes_left: int | None = None
