"""Password hashing with Argon2id, run off the event loop, with equal cost for unknown users."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_PASSWORD_LENGTH = 12


class Passwords:
    """Hashes and verifies passwords; ``verify_unknown`` spends the same time on a miss."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()
        # A real hash of a throwaway password: verifying against it costs what a real check costs.
        self._decoy = self._hasher.hash("decoy password that nobody has")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    async def verify(self, password_hash: str, password: str) -> bool:
        return await asyncio.to_thread(self._verify, password_hash, password)

    async def verify_unknown(self, password: str) -> bool:
        """Spend a real verification's time and refuse: for unknown or disabled accounts."""
        await asyncio.to_thread(self._verify, self._decoy, password)
        return False

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


def password_problem(password: str) -> str | None:
    """Why a new password is unacceptable, or None (length over composition, as NIST advises)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > 1024:
        return "must be at most 1024 characters"
    return None
