"""Known devices: a signed cookie saying this browser signed in to an account before.

The cookie holds a random device id and an HMAC of it with the account, under the gateway's
key, so it cannot be made up or moved to another account. Sign-in throttling gives such a
device an allowance of its own (see gateway.web.pages), so guesses from elsewhere cannot
lock the account's owner out. Pure: the key and the account are passed in.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

# How long a browser is remembered after its last successful sign-in.
DEVICE_COOKIE_SECONDS = 180 * 24 * 3600

_PURPOSE = b"known-device"
_SHAPE = re.compile(r"([A-Za-z0-9_-]{22})\.([0-9a-f]{64})")


def new_device_id() -> str:
    return secrets.token_urlsafe(16)  # 22 characters


def _mac(key: bytes, account: str, device_id: str) -> str:
    message = b"\0".join((_PURPOSE, account.encode(), device_id.encode()))
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def device_cookie(key: bytes, account: str, device_id: str) -> str:
    """The cookie value that names ``device_id`` as a known device of ``account``."""
    return f"{device_id}.{_mac(key, account, device_id)}"


def known_device(key: bytes, account: str, cookie: str | None) -> str | None:
    """The device id in ``cookie`` if it was issued for ``account`` under ``key``, else None."""
    match = _SHAPE.fullmatch(cookie or "")
    if match is None:
        return None
    device_id, presented = match.groups()
    if not hmac.compare_digest(_mac(key, account, device_id), presented):
        return None
    return device_id
