"""The admin API's bodies for people: users found by a search, one user's 2FA state, and
enrolment over time for the dashboard's chart."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from gateway.policy import Outcome
from gateway.schema.instants import Instant
from gateway.schema.organisations import Tenant


class UserSummary(BaseModel):
    """A user as a search lists them."""

    id: str
    email: str
    display_name: str
    role: Literal["principal", "member"]
    org_id: str
    org_name: str | None
    disabled: bool
    enrolled: bool = Field(description="A primary second factor is set up.")


class UserList(BaseModel):
    """One page of a user search, in the order users were added."""

    users: list[UserSummary]
    more: bool = Field(description="More users match: ask again with offset = next_offset.")
    next_offset: int


class MfaState(BaseModel):
    """A user's 2FA: what is set up and when, and what a policy asks of them."""

    enrolled: bool
    methods: list[str] = Field(description="The primary methods set up (totp, sms).")
    has_backup: bool
    enrolled_at: Instant | None = Field(description="When the primary method was confirmed.")
    deadline: Instant | None = Field(description="The 2FA deadline that applies, if any.")
    outcome: Outcome = Field(description="What a fresh sign-in gets now (see explainDecision).")
    blocked: bool = Field(description="A fresh sign-in now is blocked until 2FA is set up.")


class UserDetail(BaseModel):
    """One user: account, organisation, linked tenants, 2FA state and last sign-in."""

    id: str
    email: str
    display_name: str
    role: Literal["principal", "member"]
    disabled: bool
    created_at: Instant
    org_id: str
    org_name: str | None
    tenants: list[Tenant] = Field(description="The organisation's tenants (source, country).")
    mfa: MfaState
    last_sign_in: Instant | None


class EnrolmentDay(BaseModel):
    date: str = Field(json_schema_extra={"format": "date"})
    enrolled: int = Field(description="Users in scope with 2FA set up by the end of the day.")


class EnrolmentSeries(BaseModel):
    """Users the policy covers with 2FA set up, per day in the policy's time zone, from when
    their primary method was confirmed (users covered now; a reset user counts from their
    new set-up)."""

    policy_id: str
    timezone: str
    deadline: Instant
    in_scope: int
    days: list[EnrolmentDay]
