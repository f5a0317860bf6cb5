"""CSRF tokens: an HMAC of a per-session (or, before sign-in, per-browser) secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets

# Before sign-in there is no session: a random nonce in its own cookie stands in for it
# (the signed double-submit pattern), so the login form is protected too.
NONCE_BYTES = 32


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def csrf_token(key: bytes, binding: str, purpose: str = "form") -> str:
    """The token forms carry; ``binding`` is the session's csrf secret or the pre-sign-in nonce."""
    mac = hmac.new(key, f"{purpose}\x00{binding}".encode(), hashlib.sha256)
    return mac.hexdigest()


def csrf_valid(
    key: bytes, binding: str | None, presented: str | None, purpose: str = "form"
) -> bool:
    """Constant-time check of a presented token against the one for ``binding``."""
    if not binding or not presented:
        return False
    expected = csrf_token(key, binding, purpose)
    return hmac.compare_digest(expected.encode(), presented.encode("utf-8", "replace"))
