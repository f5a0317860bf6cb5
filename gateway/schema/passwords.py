"""The bodies of the password calls of the user JSON API: forgot, reset with a link, change."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from gateway.accounts.password_resets import MAX_TOKEN
from gateway.schema.user_api import MAX_EMAIL, MAX_PASSWORD


class ForgotBody(BaseModel):
    """The address to send a reset link to, if it has an account."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=1, max_length=MAX_EMAIL)


class ResetBody(BaseModel):
    """The token from the emailed link and the new password."""

    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=MAX_TOKEN)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class ChangeBody(BaseModel):
    """The current password and the new one."""

    model_config = ConfigDict(extra="forbid")

    current_password: str = Field(min_length=1, max_length=MAX_PASSWORD)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD)


class Accepted(BaseModel):
    """The one answer to a request for a reset link, whether or not the address has an
    account."""

    message: str = Field(description="What to tell the user.")


class PasswordSet(BaseModel):
    """A password set with a reset link: no session is made; sign in with it."""

    message: str = Field(description="What to tell the user.")
    sessions_ended: bool = Field(description="Every session of the user ended.")


class PasswordChanged(BaseModel):
    """A password changed while signed in: every other session ended, this one has a new id."""

    message: str = Field(description="What to tell the user.")
    csrf_token: str = Field(description="The session's new CSRF token (its id changed).")
