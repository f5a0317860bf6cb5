"""The first factor from the gateway's own accounts: email and password against the store."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.accounts.passwords import Passwords
from gateway.store.records import User
from gateway.store.users import UserRepository


@dataclass(frozen=True, kw_only=True)
class FirstFactorResult:
    """Who signed in, or why not; ``reason`` is for the log and audit only, never the user."""

    user: User | None
    reason: str
    account_id: str | None = None  # the account named, when one exists (for the audit trail)


class IdentitySource(Protocol):
    """Answers "who is this user": local accounts today, an OIDC provider or hand-off later."""

    async def authenticate(self, email: str, password: str) -> FirstFactorResult: ...


class LocalAccounts:
    def __init__(self, users: UserRepository, passwords: Passwords) -> None:
        self._users = users
        self._passwords = passwords

    async def authenticate(self, email: str, password: str) -> FirstFactorResult:
        user = await self._users.find_by_email(email.strip())
        if user is None:
            await self._passwords.verify_unknown(password)
            return FirstFactorResult(user=None, reason="unknown-user")
        if not await self._passwords.verify(user.password_hash, password):
            return FirstFactorResult(user=None, reason="wrong-password", account_id=user.id)
        if user.disabled:
            return FirstFactorResult(user=None, reason="disabled", account_id=user.id)
        return FirstFactorResult(user=user, reason="ok", account_id=user.id)
