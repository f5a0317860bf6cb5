"""Known devices: a signed cookie saying this browser signed in to an account before.

The cookie holds a random device id and an HMAC of it with the account, under the gateway's
``devices`` key, so it cannot be made up or moved to another account. The account is named
by something the secret key does not change (its lower-cased email address, which appears
only inside the HMAC), so a cookie made before a key rotation still counts. Sign-in
throttling gives such a device an allowance of its own (see gateway.web.pages), so guesses
from elsewhere cannot lock the account's owner out. Pure: the key and the account are
passed in.
"""

from __future__ import annotations

import re
import secrets

from gateway.crypto.signing import Signer

# How long a browser is remembered after its last successful sign-in.
DEVICE_COOKIE_SECONDS = 180 * 24 * 3600

_PURPOSE = b"known-device"
_SHAPE = re.compile(r"([A-Za-z0-9_-]{22})\.([0-9a-f]{64})")


def new_device_id() -> str:
    return secrets.token_urlsafe(16)  # 22 characters


def _message(account: str, device_id: str) -> bytes:
    return b"\0".join((_PURPOSE, account.encode(), device_id.encode()))


def device_cookie(signer: Signer, account: str, device_id: str) -> str:
    """The cookie value that names ``device_id`` as a known device of ``account``."""
    return f"{device_id}.{signer.sign(_message(account, device_id))}"


def known_device(signer: Signer, account: str, cookie: str | None) -> str | None:
    """The device id in ``cookie`` if it was issued for ``account`` by ``signer``, else None."""
    match = _SHAPE.fullmatch(cookie or "")
    if match is None:
        return None
    device_id, presented = match.groups()
    if not signer.verify(_message(account, device_id), presented):
        return None
    return device_id
