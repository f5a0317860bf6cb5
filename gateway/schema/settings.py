"""The bodies of a user's own 2FA settings over the user JSON API: remembered devices, recent
sign-ins, new recovery codes, and a primary or backup method changed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.schema.instants import Instant


class DeviceInfo(BaseModel):
    """A remembered device: a browser that skips the second factor at sign-in until
    ``expires_at``."""

    id: str = Field(description="Names the device here; never the cookie's token.")
    label: str = Field(description="The browser's User-Agent when it was remembered.")
    browser: str = Field(description="That User-Agent in a few words: Chrome on Windows.")
    created_at: Instant
    last_used_at: Instant | None = None
    expires_at: Instant = Field(description="When it stops counting (the policy may shorten it).")
    current: bool = Field(description="It is the browser making this call.")


class DeviceList(BaseModel):
    devices: list[DeviceInfo]


class DevicesForgotten(BaseModel):
    """Remembered devices forgotten: each asks for a second factor at its next sign-in, and
    the sessions they let in (but the asking one) are signed out."""

    forgotten: int
    message: str = Field(description="What to tell the user; they were emailed too.")


class NewRecoveryCodes(BaseModel):
    """A new set of ten recovery codes, shown this once; every earlier code stopped working."""

    recovery_codes: list[str]
    message: str


class SignInInfo(BaseModel):
    """One sign-in with the user's password."""

    at: Instant = Field(description="In the time zone of the policy that applies, else UTC.")
    client_addr: str | None = None
    browser: str = Field(description="The User-Agent in a few words: Safari on iPhone.")
    user_agent: str
    method: Literal["totp", "sms", "email", "recovery", "device"] | None = Field(
        default=None,
        description="The second factor the session passed first; none if it passed none.",
    )
    current: bool = Field(description="The sign-in of the session making this call.")


class SignInList(BaseModel):
    """The user's newest sign-ins (at most 20, of the last 90 days), the newest first."""

    time_zone: str
    sign_ins: list[SignInInfo]


class MethodChanged(BaseModel):
    """A primary or backup method changed; the user was emailed about it."""

    change: Literal["primary", "backup"]
    method: str = Field(description="The method now in place: totp, sms or email.")
    message: str = Field(description="What changed, destinations masked.")
