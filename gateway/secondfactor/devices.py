"""Remembered devices: a random token in a cookie, stored hashed, bound to one user, valid no
longer than the strictest remember-device window that applies."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.store import Store
from gateway.store.factors import RememberedDevice

TOKEN_BYTES = 32
MAX_LABEL = 120


def token_hash(token: str) -> str:
    """What is stored of a device token: its SHA-256 (the token has 256 random bits)."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def device_label(user_agent: str) -> str:
    """A short label for a device list, from the browser's User-Agent."""
    label = " ".join(user_agent.split())[:MAX_LABEL]
    return label or "unknown browser"


@dataclass(frozen=True, kw_only=True)
class NewDevice:
    """A device just remembered: ``token`` goes in the cookie and nowhere else."""

    token: str
    expires_at: float


def still_valid(device: RememberedDevice | None, user_id: str, now: float, window: float) -> bool:
    """Whether ``device`` lets ``user_id`` skip the second factor at ``now``: it is theirs, its
    own expiry has not come, and it is younger than the window in force now (which a policy
    change may have shortened)."""
    return (
        device is not None
        and secrets.compare_digest(device.user_id.encode(), user_id.encode())
        and now < device.expires_at
        and now < device.created_at + window
    )


class RememberedDevices:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def remember(
        self, user_id: str, *, now: float, window: float, user_agent: str
    ) -> NewDevice:
        token = secrets.token_urlsafe(TOKEN_BYTES)
        device = RememberedDevice(
            token_hash=token_hash(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + window,
            last_used_at=None,
            label=device_label(user_agent),
        )
        await self._store.factors.remember(device)
        return NewDevice(token=token, expires_at=device.expires_at)

    async def recognise(
        self, token: str | None, user_id: str, *, now: float, window: float
    ) -> bool:
        """Whether the cookie's ``token`` is a device remembered for ``user_id``, still in its
        window; a use is recorded."""
        if not token or len(token) > 2 * TOKEN_BYTES:
            return False
        hashed = token_hash(token)
        if not still_valid(await self._store.factors.device(hashed), user_id, now, window):
            return False
        await self._store.factors.touch_device(hashed, now)
        return True
