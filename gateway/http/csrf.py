"""CSRF tokens: an HMAC of a per-session (or, before sign-in, per-browser) secret."""

from __future__ import annotations

import secrets

from gateway.crypto.signing import Signer

# Before sign-in there is no session: a random nonce in its own cookie stands in for it
# (the signed double-submit pattern), so the login form is protected too.
NONCE_BYTES = 32


def new_nonce() -> str:
    return secrets.token_urlsafe(NONCE_BYTES)


def _message(binding: str, purpose: str) -> bytes:
    return f"{purpose}\x00{binding}".encode()


def csrf_token(signer: Signer, binding: str, purpose: str = "form") -> str:
    """The token forms carry; ``binding`` is the session's csrf secret or the pre-sign-in nonce."""
    return signer.sign(_message(binding, purpose))


def csrf_valid(
    signer: Signer, binding: str | None, presented: str | None, purpose: str = "form"
) -> bool:
    """Constant-time check of a presented token against the one for ``binding``; a token
    made with a previous secret key is still good (see ``[security] previous_secret_keys``)."""
    if not binding or not presented:
        return False
    return signer.verify(_message(binding, purpose), presented)
