"""The bodies of 2FA resets: the team as a principal sees it, a reset done, and a support
reset's record of who checked the person's identity and why."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.schema.instants import Instant
from gateway.secondfactor.resets import MAX_SUPPORT_TEXT


class TeamMember(BaseModel):
    """A user of the principal's organisation and their 2FA state."""

    id: str
    email: str
    display_name: str
    role: Literal["principal", "member"]
    disabled: bool
    enrolled: bool
    methods: list[str] = Field(description="The primary methods set up (totp, sms).")
    has_backup: bool
    deadline: Instant | None = Field(
        default=None, description="The 2FA deadline that applies to them, if a policy does."
    )
    last_sign_in: Instant | None = None
    can_reset: bool = Field(
        description=(
            "Whether the caller may reset their 2FA now (a member, enabled, and the caller's"
            " own 2FA is set up)."
        )
    )


class Team(BaseModel):
    """The caller's organisation (the caller included), in the order users were added."""

    can_reset: bool = Field(
        description="False for a principal whose own 2FA is not set up: they must set it up first."
    )
    step_up_seconds: int = Field(
        description="A reset needs a second-factor check no older than this (seconds)."
    )
    members: list[TeamMember]


class ResetAnswer(BaseModel):
    """A 2FA reset done: what was removed, and whether the user was emailed."""

    user_id: str
    email: str
    reset_at: Instant
    factors: int
    recovery_codes: int
    devices: int
    sessions: int = Field(description="Open sessions ended (in every gateway within seconds).")
    emailed: bool


class SupportResetBody(BaseModel):
    """A support reset: who checked the person's identity and how, and why."""

    model_config = ConfigDict(extra="forbid")

    verified_by: str = Field(
        min_length=1,
        max_length=MAX_SUPPORT_TEXT,
        description="Who checked the person's identity, and how (e.g. 'Sam, video call and ID').",
    )
    reason: str = Field(min_length=1, max_length=MAX_SUPPORT_TEXT, description="Why.")
