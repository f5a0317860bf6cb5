"""Forgotten passwords: single-use reset links (a random token, kept only as a keyed hash,
bound to the user, one live link per user), judged by pure rules, and the emails that go with
a reset or a change. A reset sets a password and nothing else: it creates no session, so the
next sign-in still asks for the second factor."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from gateway.crypto.signing import Signer
from gateway.delivery.sender import Message
from gateway.store import ResetLink, Store

RESET_LIFETIME = 15 * 60.0  # seconds a reset link works
RESET_KEEP_SECONDS = 24 * 3600.0  # how long a dead link is kept, to say why it is refused
TOKEN_BYTES = 32  # 256 bits from the CSPRNG
MAX_TOKEN = 128  # longer than any token made here: refused unread

# Why a link is refused, as the user is told.
REFUSALS = {
    "unknown": "This reset link is not valid. Ask for a new one.",
    "used": "This reset link has been used already. Ask for a new one if you still need it.",
    "replaced": (
        "A newer reset link has been sent since this one: use the link in the latest email,"
        " or ask for a new one."
    ),
    "expired": "This reset link has expired: links work for 15 minutes. Ask for a new one.",
}


class ResetRefused(Exception):
    """A reset link that cannot be used; ``reason`` is a key of REFUSALS."""

    def __init__(self, reason: str, user_id: str | None = None) -> None:
        super().__init__(REFUSALS[reason])
        self.reason = reason
        self.user_id = user_id

    @property
    def message(self) -> str:
        return REFUSALS[self.reason]


def judge_link(link: ResetLink | None, now: float) -> str | None:
    """Why ``link`` cannot be used at ``now`` (a key of REFUSALS), or None if it can."""
    if link is None:
        return "unknown"
    if link.used_at is not None:
        return "used"
    if link.retired_at is not None:
        return "replaced"
    if link.expires_at <= now:
        return "expired"
    return None


@dataclass(frozen=True, kw_only=True)
class IssuedLink:
    token: str  # for the email only: never stored, logged or audited
    expires_at: float


@dataclass(frozen=True, kw_only=True)
class DoneReset:
    user_id: str
    ended: tuple[str, ...]  # the hashes of the sessions it ended


class PasswordResets:
    """Issues, checks and spends reset links over the store."""

    def __init__(self, store: Store, hasher: Signer, *, lifetime: float = RESET_LIFETIME) -> None:
        self._store = store
        self._hasher = hasher
        self.lifetime = lifetime

    def _hashes(self, token: str) -> tuple[str, ...]:
        """The token's keyed hash under every key in rotation, the current key's first."""
        return self._hasher.tags(token.encode("utf-8", "surrogatepass"))

    async def issue(self, user_id: str, *, now: float) -> IssuedLink:
        """A new link for the user; every earlier one stops working."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        expires_at = now + self.lifetime
        await self._store.passwords.issue_reset(
            token_hash=self._hashes(token)[0], user_id=user_id, now=now, expires_at=expires_at
        )
        return IssuedLink(token=token, expires_at=expires_at)

    async def check(self, token: str, *, now: float) -> ResetLink:
        """The link ``token`` names if it can be used now; else ResetRefused."""
        link = None
        if token and len(token) <= MAX_TOKEN:
            link = await self._store.passwords.find_reset(self._hashes(token))
        reason = judge_link(link, now)
        if reason is not None or link is None:
            raise ResetRefused(reason or "unknown", link.user_id if link else None)
        return link

    async def retire(self, token: str, *, now: float) -> None:
        await self._store.passwords.retire_reset(self._hashes(token)[0], now=now)

    async def reset(self, token: str, password_hash: str, *, now: float) -> DoneReset:
        """Spend the link and set the password (ending all the user's sessions), or
        ResetRefused with nothing changed. Of two racing uses of one link, one wins."""
        link = await self.check(token, now=now)
        ended = await self._store.passwords.reset(
            token_hash=link.token_hash,
            user_id=link.user_id,
            password_hash=password_hash,
            now=now,
        )
        if ended is None:
            # Spent, retired or expired between the check and the update: say which.
            raise ResetRefused(
                judge_link(await self._store.passwords.find_reset((link.token_hash,)), now)
                or "used",
                link.user_id,
            )
        return DoneReset(user_id=link.user_id, ended=tuple(ended))


def reset_message(to: str, url: str, lifetime: float) -> Message:
    minutes = round(lifetime / 60)
    body = (
        "Someone (we hope you) asked to reset the password of your account.\n\n"
        f"Choose a new password here (the link works once, for {minutes} minutes):\n\n"
        f"{url}\n\n"
        "Setting a new password does not turn off two-factor authentication: you will still"
        " be asked for your second factor when you sign in.\n"
        "If you did not ask for this, ignore this email: your password stays as it is.\n"
    )
    return Message(to=to, subject="Reset your password", body=body)


def changed_message(to: str, *, by_reset: bool) -> Message:
    how = "with a reset link sent to this address" if by_reset else "while signed in"
    body = (
        f"The password of your account was just changed {how}, and every other session"
        " signed in to it was ended.\n\n"
        "If this was you, there is nothing more to do. If it was not, reset your password"
        ' now with "Forgot password?" on the sign-in page, and tell your administrator.\n'
    )
    return Message(to=to, subject="Your password was changed", body=body)
